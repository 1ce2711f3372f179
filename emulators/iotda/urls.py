"""Which IoTDA v5 URL goes to which handler; the SDK method of each route is its comment."""

from __future__ import annotations

from aiohttp import web

from . import responses as r

BASE = "/v5/iot/{project_id}"
SERVER_CERTS = f"{BASE}/server-certificates"
CERTS = f"{BASE}/certificates"
PRODUCTS = f"{BASE}/products"
DEVICES = f"{BASE}/devices"
DEVICE = DEVICES + "/{device_id}"
RULES = f"{BASE}/routing-rule/rules"
ACTIONS = f"{BASE}/routing-rule/actions"
QUEUES = f"{BASE}/amqp-queues"

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
    # products (minimal) and devices
    web.post(PRODUCTS, r.create_product),  # create_product
    web.get(PRODUCTS + "/{product_id}", r.show_product, allow_head=False),  # show_product
    web.post(DEVICES, r.add_device),  # add_device
    web.get(DEVICES, r.list_devices, allow_head=False),  # list_devices
    web.get(DEVICE, r.show_device, allow_head=False),  # show_device
    web.put(DEVICE, r.update_device),  # update_device
    web.delete(DEVICE, r.delete_device),  # delete_device
    web.post(DEVICE + "/freeze", r.freeze_device),  # freeze_device
    web.post(DEVICE + "/unfreeze", r.unfreeze_device),  # unfreeze_device
    web.post(DEVICE + "/action",
             r.reset_device_secret),  # reset_device_secret (?action_id=resetSecret)
    web.post(DEVICE + "/reset-fingerprint", r.reset_fingerprint),  # reset_fingerprint
    web.get(DEVICE + "/shadow", r.show_device_shadow, allow_head=False),  # show_device_shadow
    web.put(DEVICE + "/shadow",
            r.update_device_shadow_desired_data),  # update_device_shadow_desired_data
    web.post(DEVICE + "/messages", r.create_message),  # create_message
    web.get(DEVICE + "/messages", r.list_device_messages,
            allow_head=False),  # list_device_messages
    web.post(DEVICE + "/commands", r.create_command),  # create_command
    web.put(DEVICE + "/properties", r.update_properties),  # update_properties
    web.get(DEVICE + "/properties", r.list_properties, allow_head=False),  # list_properties
    # data forwarding
    web.post(RULES, r.create_routing_rule),  # create_routing_rule
    web.get(RULES, r.list_routing_rules, allow_head=False),  # list_routing_rules
    web.get(RULES + "/{rule_id}", r.show_routing_rule, allow_head=False),  # show_routing_rule
    web.put(RULES + "/{rule_id}", r.update_routing_rule),  # update_routing_rule
    web.delete(RULES + "/{rule_id}", r.delete_routing_rule),  # delete_routing_rule
    web.post(ACTIONS, r.create_rule_action),  # create_rule_action
    web.get(ACTIONS, r.list_rule_actions, allow_head=False),  # list_rule_actions
    web.get(ACTIONS + "/{action_id}", r.show_rule_action, allow_head=False),  # show_rule_action
    web.put(ACTIONS + "/{action_id}", r.update_rule_action),  # update_rule_action
    web.delete(ACTIONS + "/{action_id}", r.delete_rule_action),  # delete_rule_action
    web.post(QUEUES, r.add_queue),  # add_queue
    web.get(QUEUES, r.batch_show_queue, allow_head=False),  # batch_show_queue
    web.get(QUEUES + "/{queue_id}", r.show_queue, allow_head=False),  # show_queue
    web.delete(QUEUES + "/{queue_id}", r.delete_queue),  # delete_queue
    web.post(f"{BASE}/auth/accesscode", r.create_access_code),  # create_access_code
]
