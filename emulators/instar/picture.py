"""The camera's picture: one small real JPEG (320x180), stamped per upload with a comment.

The bytes are those of fixtures/instar/Test-Snapshot.jpeg, embedded so the package needs no
data files at run time.
"""

from __future__ import annotations

import base64

_JPEG_B64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdB"
    "RkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09P"
    "T09PT09PT09PT09PT0//wAARCAC0AUADASIAAhEBAxEB/8QAGgABAQEBAQEBAAAAAAAAAAAAAAMFBgIBBP/EADMQAQEAAAMD"
    "CQYGAwAAAAAAAAASAQIEERUWAwUUU2SSo9HhBhMlUXOCIzFhscHCJEKy/8QAGQEBAAMBAQAAAAAAAAAAAAAAAAIDBAEF/8QA"
    "HREBAQACAwEBAQAAAAAAAAAAABEBAgMTUQQxMv/aAAwDAQACEQMRAD8A6OikqKehHlK0UlRRBWikqKIK0UlRRBWikqKIK0Ul"
    "RRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBKi"
    "k6KSjrS5t0PTvefixGz/AF27du39f0ft3D2rw/V49mcdvSft/lusvJyba7ZxjLXxcWm2mM5wxdw9q8P1Nw9q8P1bQr7d/VnT"
    "p4xdw9q8P1Nw9q8P1bQdu/p06eMXcPavD9TcPavD9W0Hbv6dOnjF3D2rw/U3D2rw/VtB27+nTp4xdw9q8P1Nw9q8P1bQdu/p"
    "06eMXcPavD9WRy+X3XL8pyVbYzY5dvz2Yuxcbrs3+fqfq5v3xXcO+22c1TzceuuMR4opOimiMylFJ0UQUopOiiClFJ0UQUop"
    "OiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQSopKikok6T2Wx29K+z+W+572Tx29L+z+zoWDm/vLbw/xgAV"
    "LQAAAAAAABxPOGb4hqfq5v3xds4TnHH4lqvrZ/3xafm/cs/0fmHiikqKa4yq0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikq"
    "KIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBKik6KSjrqPZDHb0z7P7OkcVzBztp+bekdIycpm95OyMMMfy2/PHD5tjivQdVq"
    "e7l82Lm49s75zjDVx7641xjOW6MLivQdVqe7l8zivQdVqe7l81XTv4s7NfW6MLivQdVqe7l8zivQdVqe7l8zp38OzX1ujC4r"
    "0HVanu5fM4r0HVanu5fM6d/Ds19bowuK9B1Wp7uXzOK9B1Wp7uXzOnfw7NfW6MLivQdVqe7l8zivQdVqe7l8zp38OzX1uuA5"
    "yzfE9X9bP/1i6LivQdVqe7l83K6zl8vL6zl+WyYY4ZeU5TNmwwx/PZjjtaPn021zm4U822NsYj5RSdFNUZ1KKToogpRSdFEF"
    "KKToogpRSdFEFKKToogpRSdFEFKKToogpRSdFEFKKToogpRSdFEFKKTooglRSVFJRJWikqKIK0UlRRBWikqKIK0UlRRBWikq"
    "KIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIJUU"
    "lRSUdVopKiiCtFJUUQVopKiiCtFJUUQVopKiiCtFJUUQVopKiiCtFJUUQVopKiiCtFJUUQVopKiiCtFJUUQVopKiiCtFJUUQ"
    "VopKiiCtFJUUQVopKiiCtFJUUQVopKiiCdFJUUlHVaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKS"
    "oogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSooglRSVFOxJWikqKIK0UlRRBWikqKIK"
    "0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRRBWikqKIK0UlRR"
    "BWikqKIJUUnRSUdUopOiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUop"
    "OiiClFJ0UQUopOiiClFJ0UQUopOiiClFJ0UQUopOiiCVFJUUlElaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoog"
    "rRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSoogrRSVFEFaKSooglRSdFJR1Sik6KIKUUn"
    "RRBSik6KIKUUnRRBSik6KIKUUnRRBSik6KIKUUnRRBSik6KIKUUnRRBSik6KIKUUnRRBSik6KIKUUnRRBSik6KIKUUnRRBSi"
    "k6KIKUUnRRBSik6KIJgJOgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP/9k="
)

TEST_SNAPSHOT: bytes = base64.b64decode(_JPEG_B64)

SOI = b"\xff\xd8"
COM = b"\xff\xfe"


def snapshot(comment: str | None = None) -> bytes:
    """A JPEG of the camera's view; ``comment`` goes into a COM segment so that every alarm
    or scheduled picture is a distinct, still valid JPEG."""
    if not comment:
        return TEST_SNAPSHOT
    text = comment.encode("utf-8")[:65000]
    segment = COM + (len(text) + 2).to_bytes(2, "big") + text
    # JFIF wants its APP0 segment first after SOI: the comment goes right behind it.
    app0_end = len(SOI) + 2 + int.from_bytes(TEST_SNAPSHOT[4:6], "big")
    return TEST_SNAPSHOT[:app0_end] + segment + TEST_SNAPSHOT[app0_end:]
