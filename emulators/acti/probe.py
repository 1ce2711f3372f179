"""The ACTi camera's probe script: the ``update`` CGI's read commands, the identity
commands, and the refusals and errors a client may meet, for ``emulators capture`` and
``emulators drift``. Read-only unless a capture is run with ``--write``."""

from __future__ import annotations

from emulators.core.quirks.probe import Script, Step

UPDATE = "/cgi-bin/update"
SYSTEM = "/cgi-bin/system"
LOGIN = (("USER", "<user>"), ("PWD", "<password>"))


def _cmd(command: str, value: str = "") -> tuple[tuple[str, str], ...]:
    return (*LOGIN, (command, value))  # an empty value is the bare ``CMD`` (a read)


SCRIPT = Script(
    kind="acti-camera",
    version=1,
    steps=(
        # SYSTEM_INFO / VERSION are not emulated; a real camera names itself there.
        Step("system-info", SYSTEM, _cmd("SYSTEM_INFO"), identity=True),
        Step("version", SYSTEM, _cmd("VERSION"), identity=True),
        Step("https-cer", UPDATE, _cmd("HTTPS_CER"), read=True),
        Step("https-csr", UPDATE, _cmd("HTTPS_CSR_CREATE"), read=True),
        Step("wrong-password", UPDATE,
             (("USER", "<user>"), ("PWD", "<wrong-password>"), ("HTTPS_CER", "")),
             expect_refusal=True),
        Step("unknown-command", UPDATE, _cmd("NOSUCHTHING")),
        Step("no-command", UPDATE, LOGIN),
        Step("two-commands", UPDATE, (*_cmd("HTTPS_CER"), ("HTTPS_CSR_CREATE", ""))),
        Step("bad-https-cer", UPDATE, _cmd("HTTPS_CER", "nosuchaction")),
        Step("unknown-path", "/cgi-bin/nosuch", _cmd("HTTPS_CER")),
        # Stage 1 of an upload: the device grants an upload for a while; nothing is changed.
        Step("https-cer-upload", UPDATE, _cmd("HTTPS_CER", "upload"), writes=True),
    ),
    model=r"""^\s*(?:Model Name|Model|MODEL|PRODUCT_NAME)\s*[:=]\s*'?([^'\r\n]+)""",
    firmware=r"""^\s*(?:Firmware Version|FIRMWARE_VERSION|VERSION)\s*[:=]\s*'?([^'\r\n]+)""",
    refusal=r"ERROR: not authorized",
    default_user="admin",
    default_password="123456",
)
