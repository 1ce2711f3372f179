"""The INSTAR camera's probe script: every ``param.cgi`` request the emulator answers, the
identity command, and the refusals and errors a client may meet, for ``emulators capture``
and ``emulators drift``. Read-only unless a capture is run with ``--write``."""

from __future__ import annotations

from emulators.core.quirks.probe import Script, Step

CGI = "/param.cgi"
LOGIN = (("user", "<user>"), ("pwd", "<password>"))


def _cmd(name: str, *pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("cmd", name), *pairs, *LOGIN)


SCRIPT = Script(
    kind="instar-camera",
    version=1,
    steps=(
        # getserverinfo is not emulated; a real camera names its model and firmware there.
        Step("getserverinfo", CGI, _cmd("getserverinfo"), identity=True),
        Step("getftpattr", CGI, _cmd("getftpattr"), read=True),
        Step("getftpattr-basic", CGI, (("cmd", "getftpattr"),),
             headers=(("Authorization", "<basic>"),), read=True),
        Step("getpubkey", CGI, _cmd("getpubkey"), read=True),
        Step("getftpaction", CGI, _cmd("getftpaction"), read=True),
        Step("getftpaction-snap", CGI, _cmd("getftpaction", ("type", "snap")), read=True),
        Step("getftpactionattr", CGI, _cmd("getftpactionattr"), read=True),
        Step("getsnapschedftpattr", CGI, _cmd("getsnapschedftpattr"), read=True),
        Step("getsnaptimerftpattr", CGI, _cmd("getsnaptimerftpattr"), read=True),
        Step("wrong-password", CGI,
             (("cmd", "getftpattr"), ("user", "<user>"), ("pwd", "<wrong-password>")),
             expect_refusal=True),
        Step("no-login", CGI, (("cmd", "getftpattr"),), expect_refusal=True),
        Step("unknown-command", CGI, _cmd("getnosuchthing")),
        Step("no-command", CGI, LOGIN),
        Step("bad-action-type", CGI, _cmd("getftpaction", ("type", "nosuchtype"))),
        Step("unknown-path", "/nosuch.cgi", LOGIN),
        # Writes put back the value just read: the device's answer to a set is recorded,
        # the setting is left as it was.
        Step("setftpattr", CGI, _cmd("setftpattr", ("ft_port", "{getftpattr.ft_port}")),
             writes=True),
        Step("setftpattr-restore", CGI,
             _cmd("setftpattr", ("ft_port", "{getftpattr.ft_port}")),
             restore_of="setftpattr"),
        Step("setftpactionattr", CGI,
             _cmd("setftpactionattr", ("snapcount", "{getftpactionattr.snapcount}")),
             writes=True),
        Step("setftpactionattr-restore", CGI,
             _cmd("setftpactionattr", ("snapcount", "{getftpactionattr.snapcount}")),
             restore_of="setftpactionattr"),
    ),
    model=r"""^\s*(?:var\s+)?model=["']([^"']+)""",
    firmware=r"""^\s*(?:var\s+)?(?:softVersion|firmware)=["']([^"']+)""",
    refusal=r'response="211"',
    default_user="admin",
    default_password="instar",
)
