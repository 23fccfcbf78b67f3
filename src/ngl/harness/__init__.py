"""The training harness, split by job: :mod:`.setup` builds a run from a
:class:`~ngl.runspec.TrainConfig` (data, model, loss, preprocessing, optimizer), :mod:`.loop` trains
and measures it, :mod:`.folder` guards and writes its output folder (config, history, checkpoint,
plots). :func:`ngl.train.train` puts the three together."""
