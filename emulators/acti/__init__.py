"""ACTi-style IP camera: the ``update`` CGI (HTTPS_CER, HTTPS_CSR_CREATE) and a real HTTPS
listener, wire-exact against seed 000 (see README.md in this package)."""
