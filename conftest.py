"""Root pytest configuration: docstring examples under src/ngl run as tests (--doctest-modules).

Keras modules are left out of doctest collection: importing TensorFlow and torch into one process
crashes, so the Keras tests run each backend in a subprocess (tests/test_keras*.py)."""
collect_ignore_glob = ["src/ngl/keras/*"]
