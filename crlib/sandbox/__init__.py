"""The crlib sandbox: a local, stateful emulation of the Azure endpoints the runbook touches.

It never imports crlib's step code. Each emulated service keeps its state (``models``)
apart from its HTTP layer (``responses`` and ``urls``), as moto does.
"""
