"""The farm's AMQP 1.0 wing, vendor-neutral: a server (``server``) that cloud members drive
through an application interface (``hooks``), bounded queues with AMQP's settlement rules
(``queue``), the SASL PLAIN layer done before proton (``sasl``), and one proton engine per
connection (``connection``, ``links``). Its limits are one record (``options``). How it fits
together and the choices made: docs/AMQP.md.
"""
