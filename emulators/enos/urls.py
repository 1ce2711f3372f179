"""Which EnOS URL goes to which handler: the APIM gateway's token service, the Connection
Service's certificates (``?action=`` picks the call) and the public CA downloads."""

from __future__ import annotations

from aiohttp import web

from . import gateway as g
from . import responses as r

TOKEN_SERVICE = "/apim-token-service/v2.0/token"
CERTIFICATES = "/connect-service/v2.0/certificates"
CA_CERT = "/enos/CA/cacert/{authority}"  # certChainURL
CA_CRL = "/enos/CA/crl/{authority}"  # every issued certificate's revocation URL

ROUTES: list[web.RouteDef] = [
    # the token service (public)
    web.post(TOKEN_SERVICE + "/get", g.token_get),  # get an access token
    web.post(TOKEN_SERVICE + "/refresh", g.token_refresh),  # refresh it
    # the Connection Service, behind the gateway
    web.get(CERTIFICATES, r.certificates),  # ?action=list
    web.post(CERTIFICATES, r.certificates),  # ?action=apply|renew|revoke
    # the CA downloads (public)
    web.get(CA_CERT, r.ca_cert),  # the root, PEM
    web.get(CA_CRL, r.ca_crl),  # the root's CRL, DER
]
