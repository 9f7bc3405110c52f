"""The crlib sandbox: a local, stateful emulation of the Azure endpoints the runbook touches.

It never imports crlib's step code. Each emulated service keeps its state (``models``)
apart from its HTTP layer (``responses`` and ``urls``), as moto does, and declares its routes,
operation kinds and hooks in one ``service.py`` (core.service.Service); ``services.SERVICES``
lists them in order. docs/sandbox.md has the folder map and "Adding a service".
"""
