"""ortpipe's HTTP server (``pip install 'ortpipe[serve]'``): FastAPI on uvicorn, dynamic batching.

    ortpipe serve --bundle bundles/my-model --port 8080

or mount the app in your own ASGI server::

    from ortpipe.serve import ServeConfig, create_app
    app = create_app(TextClassifier.load(), ServeConfig())

FastAPI is imported only when ``create_app`` is first used, so ``ortpipe``'s
command line starts without the serve extra.
"""

from ortpipe.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from ortpipe.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'ortpipe.serve' has no attribute {name!r}")
