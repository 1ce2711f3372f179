"""Which IoTDA v5 URL goes to which handler; the SDK method of each route is its comment."""

from __future__ import annotations

from aiohttp import web

from . import responses as r

BASE = "/v5/iot/{project_id}"
SERVER_CERTS = f"{BASE}/server-certificates"
CERTS = f"{BASE}/certificates"

ROUTES: list[web.RouteDef] = [
    # server certificates (seed 004)
    web.post(SERVER_CERTS, r.create_server_certificate),  # create_server_certificate
    web.get(SERVER_CERTS, r.list_server_certificates, allow_head=False),  # list_server_certificate
    web.get(SERVER_CERTS + "/{certificate_id}", r.show_server_certificate,
            allow_head=False),  # show_server_certificate
    web.delete(SERVER_CERTS + "/{certificate_id}",
               r.delete_server_certificate),  # delete_server_certificate
    # device CA certificates (seed 003)
    web.post(CERTS, r.add_certificate),  # add_certificate
    web.get(CERTS, r.list_certificates, allow_head=False),  # list_certificates
    web.get(CERTS + "/{certificate_id}", r.show_certificate, allow_head=False),  # show_certificate
    web.put(CERTS + "/{certificate_id}", r.update_certificate),  # update_certificate
    web.delete(CERTS + "/{certificate_id}", r.delete_certificate),  # delete_certificate
    web.post(CERTS + "/{certificate_id}/action",
             r.check_certificate),  # check_certificate (?action_id=verify)
]
