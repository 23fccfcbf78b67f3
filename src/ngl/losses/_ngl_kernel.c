/* Fused NGL forward+backward on CPU, float32: one call gives per-sample values and logit gradients.
 *
 * Layout z[b][c][s] (s = flattened spatial dims, S = 1 for plain classification), labels t[b][s].
 *   p       = softmax_c(z)
 *   value   = (1/C) * ( sum_c h(p_c) + e^{a-2p_t} - e^{a-p_t} ),  h(p) = e^{a-p} - cos(cos(sin p))
 *   dL/dp_c = h'(p_c) + [c == t] (e^{a-p_t} - 2 e^{a-2p_t})
 *   grad    = (1/C) * p * (dL/dp - sum_c p_c dL/dp_c)
 * h and h' are polynomials in u = 2p - 1 (coefficients from Python, highest degree first).
 * No -ffast-math: NaN/inf in the logits propagate to the outputs as in the reference code.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEG 8              /* polynomial degree: must equal _DEGREE in ngl.py */
#define SMALL_C 48         /* rows with fewer classes are transposed and vectorised along B */

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

/* One sample, S == 1: the row z[0..C) is contiguous. */
static void row(const float *restrict z, int64_t t, int64_t C, const float *restrict ch,
                const float *restrict cdh, float alpha, float *value, float *restrict g) {
    float m = -INFINITY;
    int bad = 0;
#pragma omp simd reduction(max:m) reduction(|:bad)
    for (int64_t c = 0; c < C; ++c) { m = z[c] > m ? z[c] : m; bad |= (z[c] != z[c]); }
    if (bad || isinf(m)) m = 0.0f;                     /* NaN/inf rows: let the NaN flow */
    float sum = 0.0f;
#pragma omp simd reduction(+:sum)
    for (int64_t c = 0; c < C; ++c) { g[c] = ngl_expf(z[c] - m); sum += g[c]; }
    const float inv = 1.0f / sum;
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
    *value = (hsum + e2 - e1) / (float)C;
    const float invc = 1.0f / (float)C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
        const float p = g[c];
        g[c] = p * (horner(cdh, 2.0f * p - 1.0f) - dot) * invc;
    }
    g[t] += pt * (e1 - 2.0f * e2) * invc;
}

/* One sample, S > 1: z[c*S + s]; vectorised along s with per-position scratch (4 * S floats). */
static void plane(const float *restrict z, const int64_t *restrict t, int64_t C, int64_t S,
                  const float *restrict ch, const float *restrict cdh, float alpha,
                  float *restrict value, float *restrict g, float *restrict scratch) {
    float *restrict m = scratch, *restrict acc = scratch + S, *restrict hsum = scratch + 2 * S,
          *restrict dot = scratch + 3 * S;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) { m[s] = -INFINITY; acc[s] = 0.0f; hsum[s] = 0.0f; dot[s] = 0.0f; }
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
        for (int64_t s = 0; s < S; ++s) {
            const float p = gc[s] * acc[s], u = 2.0f * p - 1.0f;
            gc[s] = p;
            hsum[s] += horner(ch, u);
            dot[s] += p * horner(cdh, u);
        }
    }
    const float invc = 1.0f / (float)C;
    for (int64_t s = 0; s < S; ++s) {
        const float pt = g[t[s] * S + s];
        const float e1 = ngl_expf(alpha - pt), e2 = ngl_expf(alpha - 2.0f * pt);
        value[s] = (hsum[s] + e2 - e1) * invc;
        acc[s] = pt * (e1 - 2.0f * e2) * invc;        /* reuse: true-class correction */
        m[s] = dot[s] + pt * (e1 - 2.0f * e2);         /* reuse: sum_c p dL/dp */
    }
    for (int64_t c = 0; c < C; ++c) {
        float *restrict gc = g + c * S;
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
            const float p = gc[s];
            gc[s] = p * (horner(cdh, 2.0f * p - 1.0f) - m[s]) * invc;
        }
    }
    for (int64_t s = 0; s < S; ++s) g[t[s] * S + s] += acc[s];
}

/* Returns 0 on success, 1 on a bad argument, 2 if scratch memory could not be allocated. */
int ngl_forward_f32(const float *z, const int64_t *t, int64_t B, int64_t C, int64_t S,
                    const float *ch, const float *cdh, int deg, float alpha,
                    float *value, float *grad) {
    if (deg != DEG || C < 1 || S < 1) return 1;
    if (S == 1 && C >= SMALL_C) {
        for (int64_t b = 0; b < B; ++b)
            row(z + b * C, t[b], C, ch, cdh, alpha, value + b, grad + b * C);
        return 0;
    }
    if (S == 1) {   /* few classes: transpose to (C, B) and vectorise along the batch instead */
        float *buf = malloc((size_t)B * (2 * C + 4) * sizeof(float));
        if (!buf) return 2;
        float *zt = buf, *gt = buf + B * C;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c) zt[c * B + b] = z[b * C + c];
        plane(zt, t, C, B, ch, cdh, alpha, value, gt, buf + 2 * B * C);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c) grad[b * C + c] = gt[c * B + b];
        free(buf);
        return 0;
    }
    float *scratch = malloc((size_t)S * 4 * sizeof(float));
    if (!scratch) return 2;
    for (int64_t b = 0; b < B; ++b)
        plane(z + b * C * S, t + b * S, C, S, ch, cdh, alpha, value + b * S, grad + b * C * S,
              scratch);
    free(scratch);
    return 0;
}
