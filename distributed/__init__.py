"""ortpipe past one machine, on Ray (``pip install 'ortpipe[ray]'``).

- :mod:`.shipping`: send a bundle to the nodes through Ray's object store;
  every node checks each file's sha256 before loading it.
- :mod:`.data`: classify a corpus with Ray Data (``ortpipe classify --engine ray``).
- :mod:`.online`: the HTTP API of ``ortpipe serve`` as a Ray Serve deployment
  (``ortpipe serve --engine ray``).

Ray is imported only by these modules; the runtime never needs it.
"""
