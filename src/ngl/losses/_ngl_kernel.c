/* Fused NGL forward+backward on CPU, float32: one call gives the loss (per sample, or reduced)
 * and the logit gradient, for integer labels or dense (one-hot/soft) targets.
 *
 * Layout z[b][c][s] (s = flattened spatial dims, S = 1 for plain classification); labels t[b][s],
 * dense targets y[b][c][s]. p = softmax_c(z), h(p) = e^{a-p} - cos(cos(sin p)), k(p) = cos(cos(sin p)).
 *   labels: value   = (1/C) ( sum_c h(p_c) + e^{a-2p_t} - e^{a-p_t} )
 *           dL/dp_c = h'(p_c) + [c == t] (e^{a-p_t} - 2 e^{a-2p_t})
 *   dense:  value   = (1/C) sum_c ( e^{a-p_c(1+y_c)} - k(p_c) )
 *           dL/dp_c = -(1+y_c) e^{a-p_c(1+y_c)} - k'(p_c)
 *   grad    = (scale/C) * p * (dL/dp - sum_c p_c dL/dp_c)
 * h, h', k, k' are polynomials in u = 2p - 1 (rows of `coef`, from Python, highest degree first);
 * the exponentials of the true class and of dense targets are computed, not approximated.
 * Labels are checked here (a label outside [0, C) that is not ignore_index fails the call), so
 * valid input costs no separate pass. reduce: 0 none, 1 mean over kept samples, 2 sum (it scales
 * the gradient); `total` receives the reduced value (NaN for a mean over no sample, as
 * F.cross_entropy), `value` the per-sample values; either may be NULL.
 * No -ffast-math: NaN/inf in the logits propagate to the outputs as in the reference code.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus          /* also compiled into the XLA custom call (ngl/keras/_ngl_xla.cc) */
#define restrict __restrict__
#endif

#define DEG 8              /* polynomial degree: must equal DEGREE in _ngl_fused.py */
#define NC (DEG + 1)       /* coefficients per polynomial; rows: h, h', k, k' */
#define SMALL_C 48         /* rows with fewer classes are transposed and vectorised along B */
#define CHUNK 256          /* rows per transposed block */

enum { OK = 0, BAD_ARG = 1, NO_MEMORY = 2, BAD_LABEL = 3 };

#pragma omp declare simd notinbranch
static inline float ngl_expf(float x) {            /* exp for x <= 88, rel. error < 2e-7 */
    x = x < -87.0f ? -87.0f : x;
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693145751953125f - k * 1.428606765330187045e-06f;
    float q = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f +
              r * (0.00833333377f + r * (0.00138888892f + r * 0.000198412701f))))));
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return q * scale;
}

#pragma omp declare simd uniform(c) notinbranch
static inline float horner(const float *c, float u) {
    float acc = c[0];
    for (int k = 1; k <= DEG; ++k) acc = acc * u + c[k];
    return acc;
}

/* e^{z - max z} into g; returns 1 / sum (so p = g * the result). */
static float softmax_row(const float *restrict z, int64_t C, float *restrict g) {
    float m = -INFINITY;
    int bad = 0;
#pragma omp simd reduction(max:m) reduction(|:bad)
    for (int64_t c = 0; c < C; ++c) { m = z[c] > m ? z[c] : m; bad |= (z[c] != z[c]); }
    if (bad || isinf(m)) m = 0.0f;                     /* NaN/inf rows: let the NaN flow */
    float sum = 0.0f;
#pragma omp simd reduction(+:sum)
    for (int64_t c = 0; c < C; ++c) { g[c] = ngl_expf(z[c] - m); sum += g[c]; }
    return 1.0f / sum;
}

/* p = softmax over c of z[c*S + s], for every s, into g; m and acc: S floats of scratch. */
static void softmax_plane(const float *restrict z, int64_t C, int64_t S, float *restrict g,
                          float *restrict m, float *restrict acc) {
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) { m[s] = -INFINITY; acc[s] = 0.0f; }
    for (int64_t c = 0; c < C; ++c) {
        const float *restrict zc = z + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) m[s] = (zc[s] > m[s] || zc[s] != zc[s]) ? zc[s] : m[s];
    }
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) m[s] = (m[s] != m[s] || isinf(m[s])) ? 0.0f : m[s];
    for (int64_t c = 0; c < C; ++c) {
        const float *restrict zc = z + c * S;
        float *restrict gc = g + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) { gc[s] = ngl_expf(zc[s] - m[s]); acc[s] += gc[s]; }
    }
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) acc[s] = 1.0f / acc[s];
    for (int64_t c = 0; c < C; ++c) {
        float *restrict gc = g + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) gc[s] *= acc[s];
    }
}

/* One sample with label t, S == 1. Returns its value; g gets the gradient times gs. */
static float row_labels(const float *restrict z, int64_t t, int64_t C, const float *restrict coef,
                        float alpha, float gs, float *restrict g) {
    const float *ch = coef, *cdh = coef + NC;
    const float inv = softmax_row(z, C, g);
    float hsum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+:hsum, dot)
    for (int64_t c = 0; c < C; ++c) {
        const float p = g[c] * inv, u = 2.0f * p - 1.0f;
        g[c] = p;
        hsum += horner(ch, u);
        dot += p * horner(cdh, u);
    }
    const float pt = g[t];
    const float e1 = ngl_expf(alpha - pt), e2 = ngl_expf(alpha - 2.0f * pt);
    dot += pt * (e1 - 2.0f * e2);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
        const float p = g[c];
        g[c] = p * (horner(cdh, 2.0f * p - 1.0f) - dot) * gs;
    }
    g[t] += pt * (e1 - 2.0f * e2) * gs;
    return (hsum + e2 - e1) / (float)C;
}

/* One sample with dense targets y, S == 1; d: C floats of scratch. */
static float row_dense(const float *restrict z, const float *restrict y, int64_t C,
                       const float *restrict coef, float alpha, float gs, float *restrict g,
                       float *restrict d) {
    const float *ck = coef + 2 * NC, *cdk = coef + 3 * NC;
    const float inv = softmax_row(z, C, g);
    float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+:sum, dot)
    for (int64_t c = 0; c < C; ++c) {
        const float p = g[c] * inv, u = 2.0f * p - 1.0f, w = 1.0f + y[c];
        g[c] = p;
        const float e = ngl_expf(alpha - p * w);
        sum += e - horner(ck, u);
        d[c] = -w * e - horner(cdk, u);
        dot += p * d[c];
    }
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) g[c] = g[c] * (d[c] - dot) * gs;
    return sum / (float)C;
}

/* One sample, S > 1 (or a transposed batch): labels t[s] (ignored ones already replaced by 0),
 * per-position gradient factors gs[s]; scratch: 4 * S floats. */
static void plane_labels(const float *restrict z, const int64_t *restrict t, int64_t C, int64_t S,
                         const float *restrict coef, float alpha, const float *restrict gs,
                         float *restrict value, float *restrict g, float *restrict scratch) {
    const float *ch = coef, *cdh = coef + NC;
    float *restrict hsum = scratch, *restrict dot = scratch + S, *restrict a = scratch + 2 * S,
          *restrict b = scratch + 3 * S;
    softmax_plane(z, C, S, g, a, b);
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) { hsum[s] = 0.0f; dot[s] = 0.0f; }
    for (int64_t c = 0; c < C; ++c) {
        const float *restrict gc = g + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
            const float p = gc[s], u = 2.0f * p - 1.0f;
            hsum[s] += horner(ch, u);
            dot[s] += p * horner(cdh, u);
        }
    }
    const float invc = 1.0f / (float)C;
    for (int64_t s = 0; s < S; ++s) {
        const float pt = g[t[s] * S + s];
        const float e1 = ngl_expf(alpha - pt), e2 = ngl_expf(alpha - 2.0f * pt);
        value[s] = (hsum[s] + e2 - e1) * invc;
        a[s] = pt * (e1 - 2.0f * e2) * gs[s];          /* true-class correction */
        b[s] = dot[s] + pt * (e1 - 2.0f * e2);          /* sum_c p dL/dp */
    }
    for (int64_t c = 0; c < C; ++c) {
        float *restrict gc = g + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
            const float p = gc[s];
            gc[s] = p * (horner(cdh, 2.0f * p - 1.0f) - b[s]) * gs[s];
        }
    }
    for (int64_t s = 0; s < S; ++s) g[t[s] * S + s] += a[s];
}

/* One sample, S > 1 (or a transposed batch), dense targets; scratch: 3 * S + C * S floats. */
static void plane_dense(const float *restrict z, const float *restrict y, int64_t C, int64_t S,
                        const float *restrict coef, float alpha, float gs, float *restrict value,
                        float *restrict g, float *restrict scratch) {
    const float *ck = coef + 2 * NC, *cdk = coef + 3 * NC;
    float *restrict dot = scratch, *restrict a = scratch + S, *restrict b = scratch + 2 * S,
          *restrict d = scratch + 3 * S;
    softmax_plane(z, C, S, g, a, b);
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) { value[s] = 0.0f; dot[s] = 0.0f; }
    for (int64_t c = 0; c < C; ++c) {
        const float *restrict gc = g + c * S, *restrict yc = y + c * S;
        float *restrict dc = d + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
            const float p = gc[s], u = 2.0f * p - 1.0f, w = 1.0f + yc[s];
            const float e = ngl_expf(alpha - p * w);
            value[s] += e - horner(ck, u);
            dc[s] = -w * e - horner(cdk, u);
            dot[s] += p * dc[s];
        }
    }
    const float invc = 1.0f / (float)C;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) value[s] *= invc;
    for (int64_t c = 0; c < C; ++c) {
        float *restrict gc = g + c * S;
        const float *restrict dc = d + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) gc[s] = gc[s] * (dc[s] - dot[s]) * gs;
    }
}

/* Rows [0, n) of a (., C) matrix into a (C, n) block, and back: few classes are vectorised along
 * the batch, CHUNK rows at a time (the block stays in cache). */
static void gather_block(const float *restrict src, int64_t C, int64_t n, float *restrict dst) {
    for (int64_t c = 0; c < C; ++c)
        for (int64_t r = 0; r < n; ++r) dst[c * n + r] = src[r * C + c];
}

static void scatter_block(const float *restrict src, int64_t C, int64_t n, float *restrict dst) {
    for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < C; ++c) dst[r * C + c] = src[c * n + r];
}

static double sum_of(const float *v, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc += v[i];
    return acc;
}

static void finish(double acc, int reduce, int64_t kept, float *total) {
    if (total) *total = (reduce == 1) ? (kept ? (float)(acc / (double)kept) : NAN) : (float)acc;
}

/* Integer labels. value: B*S floats for the per-sample values (0 where ignored) or NULL; grad:
 * like z; total: the reduced value or NULL; info[0]: samples kept, info[1]: the bad label. */
int ngl_labels_f32(const float *z, const int64_t *t, int64_t B, int64_t C, int64_t S,
                   const float *coef, int deg, float alpha, int64_t ignore_index, int reduce,
                   float *value, float *grad, float *total, int64_t *info) {
    if (deg != DEG || C < 1 || S < 1 || reduce < 0 || reduce > 2) return BAD_ARG;
    const int64_t n = B * S;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (t[i] == ignore_index) continue;
        if (t[i] < 0 || t[i] >= C) { info[1] = t[i]; return BAD_LABEL; }
        ++kept;
    }
    info[0] = kept;
    const float gs = ((reduce == 1) ? (kept ? 1.0f / (float)kept : 0.0f) : 1.0f) / (float)C;
    double acc = 0.0;
    if (S == 1 && C >= SMALL_C) {
        for (int64_t b = 0; b < B; ++b) {
            float *g = grad + b * C, v = 0.0f;
            if (t[b] == ignore_index) memset(g, 0, C * sizeof(float));
            else v = row_labels(z + b * C, t[b], C, coef, alpha, gs, g);
            if (value) value[b] = v;
            acc += v;
        }
        finish(acc, reduce, kept, total);
        return OK;
    }
    const int small = (S == 1);        /* few classes: blocks of CHUNK rows, vectorised along B */
    const int64_t P = small ? CHUNK : S, planes = small ? (B + CHUNK - 1) / CHUNK : B;
    int64_t *tt = (int64_t *)malloc(P * sizeof(int64_t) + ((small ? 2 * C * P : 0) + 6 * P) * sizeof(float));
    if (!tt) return NO_MEMORY;
    float *zt = (float *)(tt + P), *gt = zt + (small ? C * P : 0), *gsv = zt + (small ? 2 * C * P : 0);
    float *vs = gsv + P, *scratch = vs + P;
    for (int64_t r = 0; r < planes; ++r) {
        const int64_t m = small ? (B - r * P < P ? B - r * P : P) : S;
        const int64_t *tr = t + r * P;
        if (small) gather_block(z + r * P * C, C, m, zt);
        for (int64_t s = 0; s < m; ++s) {
            const int keep = tr[s] != ignore_index;
            tt[s] = keep ? tr[s] : 0;
            gsv[s] = keep ? gs : 0.0f;
        }
        float *g = small ? gt : grad + r * C * S, *v = value ? value + r * P : vs;
        plane_labels(small ? zt : z + r * C * S, tt, C, m, coef, alpha, gsv, v, g, scratch);
        for (int64_t s = 0; s < m; ++s) {
            if (tr[s] != ignore_index) continue;
            v[s] = 0.0f;
            for (int64_t c = 0; c < C; ++c) g[c * m + s] = 0.0f;
        }
        acc += sum_of(v, m);
        if (small) scatter_block(gt, C, m, grad + r * P * C);
    }
    free(tt);
    finish(acc, reduce, kept, total);
    return OK;
}

/* Dense (one-hot or soft) targets y, shaped like z; otherwise as ngl_labels_f32. */
int ngl_dense_f32(const float *z, const float *y, int64_t B, int64_t C, int64_t S,
                  const float *coef, int deg, float alpha, int reduce,
                  float *value, float *grad, float *total) {
    if (deg != DEG || C < 1 || S < 1 || reduce < 0 || reduce > 2) return BAD_ARG;
    const int64_t n = B * S;
    const float gs = ((reduce == 1) ? (n ? 1.0f / (float)n : 0.0f) : 1.0f) / (float)C;
    const int small = (S == 1 && C < SMALL_C), rowwise = (S == 1 && !small);
    const int64_t P = small ? CHUNK : S, planes = small ? (B + CHUNK - 1) / CHUNK : B;
    float *buf = (float *)malloc((rowwise ? C : (small ? 3 * C * P : 0) + 4 * P + C * P) * sizeof(float));
    if (!buf) return NO_MEMORY;
    double acc = 0.0;
    if (rowwise) {
        for (int64_t b = 0; b < B; ++b) {
            const float v = row_dense(z + b * C, y + b * C, C, coef, alpha, gs, grad + b * C, buf);
            if (value) value[b] = v;
            acc += v;
        }
    } else {
        float *zt = buf, *yt = buf + C * P, *gt = buf + 2 * C * P;
        float *vs = small ? buf + 3 * C * P : buf, *scratch = vs + P;
        for (int64_t r = 0; r < planes; ++r) {
            const int64_t m = small ? (B - r * P < P ? B - r * P : P) : S;
            if (small) { gather_block(z + r * P * C, C, m, zt); gather_block(y + r * P * C, C, m, yt); }
            float *v = value ? value + r * P : vs, *g = small ? gt : grad + r * C * S;
            plane_dense(small ? zt : z + r * C * S, small ? yt : y + r * C * S, C, m, coef, alpha,
                        gs, v, g, scratch);
            acc += sum_of(v, m);
            if (small) scatter_block(gt, C, m, grad + r * P * C);
        }
    }
    free(buf);
    finish(acc, reduce, n, total);
    return OK;
}
