URLS = []


def router():
    from ..core.arm import render_error
    from ..core.http import Router

    return Router("iothub", render_error=render_error)
