"""The ``enos`` scenario entry: what validation refuses, and the example scenario run as a user
would run it (credentials from the ready document, the bound certificate and its key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from emulators import pki
from emulators.enos.models.ca import make_root
from emulators.scenario import ScenarioInvalid, validate

from .clients import Enos, base_options, ec_key, make_csr, rsa_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "enos.yaml"


def _problems(options: dict[str, Any]) -> str:
    with pytest.raises(ScenarioInvalid) as caught:
        validate({"emulators": [{"name": "enos", "kind": "enos", **options}]})
    return str(caught.value)


def _not_a_ca() -> dict[str, str]:
    import datetime as dt

    key = rsa_key()
    cert = pki.issue(key.public_key(), pki.name(CN="leaf"), None, key,
                     now=dt.datetime.now(dt.UTC))
    return {"cert": pki.cert_pem(cert), "key": pki.key_pem(key)}


def _root_with_wrong_key() -> dict[str, str]:
    import datetime as dt

    cert = make_root("RSA", rsa_key(), dt.datetime.now(dt.UTC), 10)
    return {"cert": pki.cert_pem(cert), "key": pki.key_pem(rsa_key(2048, 1))}


BAD = [
    pytest.param(lambda o: {"apps": [{"appKey": "plainkey", "appSecret": "s-00"}]},
                 "must look like '<x>-<hex>...'", id="appkey-not-sdk-form"),
    pytest.param(lambda o: {"apps": [{"appKey": "a-00", "appSecret": "s-xyz"}]},
                 "must look like '<x>-<hex>...'", id="appsecret-not-hex"),
    pytest.param(lambda o: {"apps": [*o["apps"], o["apps"][0]]}, "apps: duplicate appKey",
                 id="duplicate-appkey"),
    pytest.param(lambda o: {"products": [*o["products"], {"orgId": "nope",
                                                          "productKey": "P"}]},
                 "names unknown org 'nope'", id="product-of-unknown-org"),
    pytest.param(lambda o: {"devices": [*o["devices"], {
        "orgId": o["orgs"][0]["orgId"], "assetId": "z", "productKey": "nope",
        "deviceKey": "z"}]}, "names unknown product 'nope'", id="device-of-unknown-product"),
    pytest.param(lambda o: {"devices": [*o["devices"], {**o["devices"][0],
                                                        "deviceKey": "other"}]},
                 "duplicate assetId 'assetA'", id="duplicate-asset"),
    pytest.param(lambda o: {"certificates": [{"assetId": "nope"}]},
                 "certificates: unknown device 'nope'", id="certificate-for-unknown-device"),
    pytest.param(lambda o: {"certificates": [{"assetId": "assetS", "validDay": 400}]},
                 "above its product's maxValidDay 365", id="bound-validday-over-max"),
    pytest.param(lambda o: {"certificates": [{"assetId": "assetA",
                                              "csr": make_csr(rsa_key(), "x"),
                                              "key": pki.key_pem(rsa_key())}]},
                 "give csr or key, not both", id="csr-and-key"),
    pytest.param(lambda o: {"certificates": [{"assetId": "assetA",
                                              "csr": make_csr(rsa_key(1024), "x")}]},
                 "csr: Invalid cert request!message: The public key of the CSR does not match",
                 id="csr-breaks-the-rules"),
    pytest.param(lambda o: {"certificates": [{"assetId": "assetA", "issueAuthority": "ECC",
                                              "key": pki.key_pem(rsa_key())}]},
                 "key: not a key for issueAuthority ECC", id="key-of-the-wrong-kind"),
    pytest.param(lambda o: {"certificates": [{"assetId": "assetA",
                                              "subject": {"CN": "x", "DC": "y"}}]},
                 "subject: unknown fields ['DC']", id="subject-unknown-field"),
    pytest.param(lambda o: {"ca": {"rsa": _not_a_ca()}}, "the certificate is not a CA",
                 id="root-not-a-ca"),
    pytest.param(lambda o: {"ca": {"rsa": _root_with_wrong_key()}},
                 "the certificate and key do not match", id="root-key-mismatch"),
    pytest.param(lambda o: {"ca": {"ecc": {"cert": o["ca"]["rsa"]["cert"],
                                           "key": o["ca"]["rsa"]["key"]}}},
                 "the ECC root needs an EC key", id="rsa-root-as-ecc"),
    pytest.param(lambda o: {"faults": {"probability": 2}}, "less than or equal to 1",
                 id="fault-probability-above-one"),
    pytest.param(lambda o: {"tokens": 5}, "unknown key", id="unknown-option"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_validation_refuses(roots: dict[str, Any], change: Any, message: str) -> None:
    options = base_options(roots)
    assert message in _problems({**options, **change(options)})


def test_the_example_scenario_validates_with_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "emulators", "validate", str(EXAMPLE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_the_example_scenario_is_ready_to_use(farm_factory) -> None:
    scenario = yaml.safe_load(EXAMPLE.read_text())
    scenario["emulators"][0]["port"] = 0
    scenario["emulators"][0]["https_port"] = 0
    scenario["control"] = {"port": 0}
    farm = farm_factory(scenario)
    [entry] = farm.ready["emulators"]
    creds = entry["credentials"]
    enos = Enos(farm["enos"])
    org = entry["orgs"][0]
    # The bound certificate is listed, valid, and the key the emulator made matches it.
    listed = enos.sdk("list", org=org, key=creds["appKey"], secret=creds["appSecret"],
                      assetId="zBrjuW7q")
    assert listed["code"] == 0
    [bound] = listed["data"]
    assert bound["certStatus"] == 0
    state = enos.state()
    assert bound["cert"] == state["certificates"][0]["cert"]
    assert x509.load_pem_x509_certificate(bound["cert"].encode()).extensions.get_extension_for_oid(
        x509.ObjectIdentifier("2.16.840.1.113730.1.4")).value.value.endswith(
        f"{farm['enos'].urls['https']}/enos/CA/crl/RSA".encode())
    key = pki.load_key(state["device_keys"][bound["certSN"]])
    cert = x509.load_pem_x509_certificate(bound["cert"].encode())
    assert pki.public_key_matches(cert, key)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(state["ca"]["RSA"].encode()))
    # The one-way product's device cannot hold certificates.
    meter = enos.sdk("apply", {"csr": make_csr(ec_key(), "m"), "issueAuthority": "ECC"},
                     org=org, key=creds["appKey"], secret=creds["appSecret"],
                     assetId="mTr9pLq2")
    assert meter["code"] == 99400
    # A reset through the control plane brings back the same CA and bound certificate.
    renewed = enos.sdk("renew", {"certSn": bound["certSN"]}, org=org, key=creds["appKey"],
                       secret=creds["appSecret"], assetId="zBrjuW7q")
    assert renewed["code"] == 0
    import urllib.request

    req = urllib.request.Request(f"{farm.control_url}/emulators/enos/reset", method="POST",
                                 headers={"X-Requested-With": "tests"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    after = enos.state()
    assert after["ca"] == state["ca"]
    assert [c["cert_sn"] for c in after["certificates"]] == [int(bound["certSN"])]
