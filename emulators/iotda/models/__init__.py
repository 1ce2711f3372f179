"""IoTDA's state and rules, one module per resource; no HTTP in here."""

from .device_cas import DeviceCA, DeviceCAs
from .server_certificates import ServerCertificate, ServerCertificates

__all__ = ["DeviceCA", "DeviceCAs", "ServerCertificate", "ServerCertificates"]
