"""INSTAR WQHD (2K+) IP camera: the ``param.cgi`` FTP commands and real FTP/FTPS/sFTP uploads."""
