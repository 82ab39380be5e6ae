"""fmnist-serve: the Classifier as a small HTTP service (Starlette on uvicorn), with a web page.

    settings.py  what to serve and how (a frozen dataclass), the bearer token, size parsing
    workers.py   the worker threads, each with its own Classifier (interpreters are not
                 thread-safe), and what one classification returns
    uploads.py   the request body: size limit, read deadline, raw or multipart, in memory only
    metrics.py   counters and latency percentiles in Prometheus' text format
    tally.py     warnings from decoders and parsers, logged once per kind and counted
    api.py       the endpoint table: paths, methods, which are open, what each answers
    oip.py       the Open Inference Protocol (KServe V2): inference requests and answers
    openapi.py   the OpenAPI schema, built from the endpoint table and the served model
    app.py       the ASGI app built from settings: routes, auth, JSON errors; no I/O
    server.py    uvicorn with a bounded head, timeouts for slow clients, JSON refusals and a
                 graceful SIGTERM or SIGHUP
    cli.py       the fmnist-serve command

Needs the ``[serve]`` extra (starlette, uvicorn, python-multipart); never TensorFlow.
"""
