"""IoTDA's state and rules, one module per resource; no HTTP in here."""

from .device_cas import DeviceCA, DeviceCAs
from .devices import Device
from .products import Product
from .server_certificates import ServerCertificate, ServerCertificates
from .store import DeviceStore

__all__ = ["Device", "DeviceCA", "DeviceCAs", "DeviceStore", "Product", "ServerCertificate",
           "ServerCertificates"]
