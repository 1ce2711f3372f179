"""The ONVIF device management service (ver10 device wsdl, ``tds``): identity, services and
capabilities, scopes, the camera's clock, hostname, network facts, users, discovery mode and
reboot."""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import re

from .. import soap
from .call import Call, Operation
from .xml import boolean, child, child_text, children_text, date_time
from .xml import t as text

# What the camera reports for each service it has: (path, namespace prefix, version). The
# device and the services of its ONVIF generation report 2.60, the last release numbered
# the old way; media2 was specified under the year.month numbering.
DEVICE_VERSION = (2, 60)
SERVICE_VERSIONS = {"device_service": DEVICE_VERSION, "media": DEVICE_VERSION,
                    "media2": (16, 12), "events": DEVICE_VERSION, "imaging": DEVICE_VERSION}
SUPPORTED_VERSIONS = ((2, 60), (2, 40), (2, 20), (2, 0))
# Configurable scopes a camera keeps at most (SetScopes/AddScopes past it: TooManyScopes).
MAX_SCOPES = 32
MAX_SCOPE_LENGTH = 256
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# A POSIX TZ with a plain offset ("UTC0", "CST-8", "EST5"): the hours are west of UTC.
_POSIX_TZ = re.compile(r"^[A-Za-z]{3,}([+-]?\d{1,2})(?::(\d{2}))?")


def _version(major_minor: tuple[int, int]) -> str:
    return f"<tt:Major>{major_minor[0]}</tt:Major><tt:Minor>{major_minor[1]}</tt:Minor>"


def device_capabilities() -> str:
    """tds:DeviceServiceCapabilities (GetServiceCapabilities, GetServices)."""
    return ('<tds:Capabilities><tds:Network IPFilter="false" ZeroConfiguration="false" '
            'IPVersion6="false" DynDNS="false" Dot11Configuration="false" '
            'HostnameFromDHCP="false" NTP="1"/>'
            '<tds:Security TLS1.0="false" TLS1.1="false" TLS1.2="false" '
            'OnboardKeyGeneration="false" AccessPolicyConfig="false" X.509Token="false" '
            'SAMLToken="false" KerberosToken="false" UsernameToken="true" HttpDigest="true" '
            'RELToken="false" MaxUsers="8"/>'
            '<tds:System DiscoveryResolve="true" DiscoveryBye="true" RemoteDiscovery="false" '
            'SystemBackup="false" SystemLogging="false" FirmwareUpgrade="false" '
            'HttpFirmwareUpgrade="false" HttpSystemBackup="false" HttpSystemLogging="false" '
            'HttpSupportInformation="false"/></tds:Capabilities>')


def events_capabilities() -> str:
    from .events import capabilities

    return capabilities()


def _capabilities_of(service: str, call: Call) -> str:
    from . import imaging, media, media2

    if service == "device_service":
        return device_capabilities()
    if service == "media":
        return media.capabilities(call.wing)
    if service == "media2":
        return media2.capabilities(call.wing)
    if service == "events":
        return events_capabilities()
    return imaging.capabilities()


def _services(call: Call) -> list[tuple[str, str]]:
    """(path name, namespace) of every service the camera serves."""
    found = [("device_service", soap.NAMESPACES["tds"]), ("media", soap.NAMESPACES["trt"]),
             ("media2", soap.NAMESPACES["tr2"]), ("events", soap.NAMESPACES["tev"])]
    if call.wing.facts.imaging:
        found.append(("imaging", soap.NAMESPACES["timg"]))
    return found


async def get_services(call: Call) -> str:
    include = (child_text(call.body, "IncludeCapability") or "false").lower() in ("true", "1")
    parts = []
    for name, namespace in _services(call):
        caps = (f"<tds:Capabilities>{_capabilities_of(name, call)}</tds:Capabilities>"
                if include else "")
        parts.append(f"<tds:Service><tds:Namespace>{namespace}</tds:Namespace>"
                     f"<tds:XAddr>{text(call.wing.service_url(name, call.host))}</tds:XAddr>"
                     f"{caps}<tds:Version>{_version(SERVICE_VERSIONS[name])}</tds:Version>"
                     f"</tds:Service>")
    return f"<tds:GetServicesResponse>{''.join(parts)}</tds:GetServicesResponse>"


async def get_service_capabilities(call: Call) -> str:
    return (f"<tds:GetServiceCapabilitiesResponse>{device_capabilities()}"
            f"</tds:GetServiceCapabilitiesResponse>")


async def get_capabilities(call: Call) -> str:
    wing = call.wing
    asked = set(children_text(call.body, "Category")) or {"All"}
    have = {"Device", "Events", "Media"} | ({"Imaging"} if wing.facts.imaging else set())
    if "All" in asked:
        asked = have
    elif not asked <= have:
        missing = ", ".join(sorted(asked - have))
        raise soap.SoapError("env:Receiver", "ter:ActionNotSupported",
                             f"The device has no {missing} service",
                             subsubcode="ter:NoSuchService")
    parts = []
    if "Device" in asked:
        versions = "".join(f"<tt:SupportedVersions>{_version(v)}</tt:SupportedVersions>"
                           for v in SUPPORTED_VERSIONS)
        parts.append(
            f"<tt:Device><tt:XAddr>{text(wing.device_url(call.host))}</tt:XAddr>"
            "<tt:Network><tt:IPFilter>false</tt:IPFilter>"
            "<tt:ZeroConfiguration>false</tt:ZeroConfiguration>"
            "<tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS></tt:Network>"
            "<tt:System><tt:DiscoveryResolve>true</tt:DiscoveryResolve>"
            "<tt:DiscoveryBye>true</tt:DiscoveryBye>"
            "<tt:RemoteDiscovery>false</tt:RemoteDiscovery>"
            "<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging>"
            f"<tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>{versions}</tt:System>"
            "<tt:IO><tt:InputConnectors>0</tt:InputConnectors>"
            "<tt:RelayOutputs>0</tt:RelayOutputs></tt:IO>"
            "<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>"
            "<tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration>"
            "<tt:AccessPolicyConfig>false</tt:AccessPolicyConfig>"
            "<tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false</tt:SAMLToken>"
            "<tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken>"
            "</tt:Security></tt:Device>")
    if "Events" in asked:
        parts.append(
            f"<tt:Events><tt:XAddr>{text(wing.service_url('events', call.host))}</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
            "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>")
    if "Imaging" in asked:
        parts.append(f"<tt:Imaging><tt:XAddr>{text(wing.service_url('imaging', call.host))}"
                     "</tt:XAddr></tt:Imaging>")
    if "Media" in asked:
        parts.append(
            f"<tt:Media><tt:XAddr>{text(wing.service_url('media', call.host))}</tt:XAddr>"
            "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
            "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
            "</tt:StreamingCapabilities><tt:Extension><tt:ProfileCapabilities>"
            f"<tt:MaximumNumberOfProfiles>{len(wing.facts.profiles)}"
            "</tt:MaximumNumberOfProfiles></tt:ProfileCapabilities></tt:Extension></tt:Media>")
    return (f"<tds:GetCapabilitiesResponse><tds:Capabilities>{''.join(parts)}"
            f"</tds:Capabilities></tds:GetCapabilitiesResponse>")


async def get_device_information(call: Call) -> str:
    ident = call.wing.facts.identity
    return (f"<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{text(ident.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{text(ident.model)}</tds:Model>"
            f"<tds:FirmwareVersion>{text(ident.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{text(ident.serial)}</tds:SerialNumber>"
            f"<tds:HardwareId>{text(ident.hardware_id)}</tds:HardwareId>"
            f"</tds:GetDeviceInformationResponse>")


# -- scopes ---------------------------------------------------------------------------------
async def get_scopes(call: Call) -> str:
    wing = call.wing
    configurable = set(wing.scopes)
    items = []
    for scope in wing.all_scopes():
        kind = "Configurable" if scope in configurable else "Fixed"
        items.append(f"<tds:Scopes><tt:ScopeDef>{kind}</tt:ScopeDef>"
                     f"<tt:ScopeItem>{text(scope)}</tt:ScopeItem></tds:Scopes>")
    return f"<tds:GetScopesResponse>{''.join(items)}</tds:GetScopesResponse>"


def _fixed_scopes(call: Call) -> set[str]:
    configurable = set(call.wing.scopes)
    return {s for s in call.wing.all_scopes() if s not in configurable}


def _checked_scopes(call: Call, scopes: list[str]) -> list[str]:
    if not scopes:
        raise soap.invalid_arg("ter:InvalidArgVal", "no scope given")
    for scope in scopes:
        if not scope or len(scope) > MAX_SCOPE_LENGTH or any(c.isspace() for c in scope):
            raise soap.invalid_arg("ter:InvalidArgVal", f"not a scope URI: {scope[:80]!r}")
    if set(scopes) & _fixed_scopes(call):
        raise soap.SoapError("env:Sender", "ter:OperationProhibited",
                             "Scope parameter overwrites fixed device scope setting, "
                             "command rejected.", subsubcode="ter:ScopeOverwrite")
    return list(dict.fromkeys(scopes))


def _too_many() -> soap.SoapError:
    return soap.SoapError("env:Receiver", "ter:Action",
                          "The requested scope list exceeds the supported number of scopes.",
                          subsubcode="ter:TooManyScopes")


async def set_scopes(call: Call) -> str:
    scopes = _checked_scopes(call, children_text(call.body, "Scopes"))
    if len(scopes) > MAX_SCOPES:
        raise _too_many()
    call.wing.scopes = scopes
    await call.wing.member.save()
    return "<tds:SetScopesResponse/>"


async def add_scopes(call: Call) -> str:
    added = _checked_scopes(call, children_text(call.body, "ScopeItem"))
    scopes = list(dict.fromkeys([*call.wing.scopes, *added]))
    if len(scopes) > MAX_SCOPES:
        raise _too_many()
    call.wing.scopes = scopes
    await call.wing.member.save()
    return "<tds:AddScopesResponse/>"


async def remove_scopes(call: Call) -> str:
    wanted = children_text(call.body, "ScopeItem")
    if not wanted:
        raise soap.invalid_arg("ter:NoScope", "no scope given")
    if set(wanted) & _fixed_scopes(call):
        raise soap.SoapError("env:Sender", "ter:OperationProhibited",
                             "Trying to remove fixed scope parameter, command rejected.",
                             subsubcode="ter:FixedScope")
    if missing := [s for s in wanted if s not in call.wing.scopes]:
        raise soap.invalid_arg("ter:NoScope", f"Trying to remove scope which does not exist: "
                                              f"{missing[0][:80]}")
    call.wing.scopes = [s for s in call.wing.scopes if s not in wanted]
    await call.wing.member.save()
    removed = "".join(f"<tds:ScopeItem>{text(s)}</tds:ScopeItem>" for s in dict.fromkeys(wanted))
    return f"<tds:RemoveScopesResponse>{removed}</tds:RemoveScopesResponse>"


# -- the camera's clock ---------------------------------------------------------------------
def _tz_offset(tz: str) -> int:
    """Seconds east of UTC a POSIX TZ's standard time is (0 when it is not a plain one)."""
    match = _POSIX_TZ.match(tz)
    if match is None:
        return 0
    hours = int(match.group(1))
    minutes = int(match.group(2) or 0)
    west = abs(hours) * 3600 + minutes * 60
    return west if hours < 0 else -west


async def get_system_date_and_time(call: Call) -> str:
    onvif = call.wing
    now = onvif.camera_time()
    local = now + _tz_offset(onvif.timezone)
    return (f"<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            f"<tt:DateTimeType>{onvif.date_time_type}</tt:DateTimeType>"
            f"<tt:DaylightSavings>{boolean(onvif.daylight_savings)}</tt:DaylightSavings>"
            f"<tt:TimeZone><tt:TZ>{text(onvif.timezone)}</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{date_time(now)}</tt:UTCDateTime>"
            f"<tt:LocalDateTime>{date_time(local)}</tt:LocalDateTime>"
            f"</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")


def _int_field(parent: soap.Element | None, local: str) -> int:
    value = child_text(parent, local) if parent is not None else None
    if value is None or not value.lstrip("-").isdigit() or len(value) > 6:
        raise soap.invalid_arg("ter:InvalidDateTime", f"the date has no valid {local}")
    return int(value)


async def set_system_date_and_time(call: Call) -> str:
    wing = call.wing
    kind = child_text(call.body, "DateTimeType")
    if kind not in ("Manual", "NTP"):
        raise soap.invalid_arg("ter:InvalidArgVal", "DateTimeType must be Manual or NTP")
    daylight = (child_text(call.body, "DaylightSavings") or "false").lower() in ("true", "1")
    zone = child(call.body, "TimeZone")
    tz = child_text(zone, "TZ") if zone is not None else None
    if tz is not None and (not tz or len(tz) > 64 or any(c.isspace() for c in tz)):
        raise soap.invalid_arg("ter:InvalidTimeZone", "the TimeZone is not a POSIX TZ")
    new_time: float | None = None
    if kind == "Manual":
        stamp = child(call.body, "UTCDateTime")
        if stamp is None:
            raise soap.invalid_arg("ter:InvalidDateTime", "a Manual time needs UTCDateTime")
        date, clock = child(stamp, "Date"), child(stamp, "Time")
        parts = (_int_field(date, "Year"), _int_field(date, "Month"), _int_field(date, "Day"),
                 _int_field(clock, "Hour"), _int_field(clock, "Minute"),
                 _int_field(clock, "Second"))
        year, month, day, hour, minute, second = parts
        if not (1970 <= year <= 2200 and 1 <= month <= 12
                and 1 <= day <= calendar.monthrange(year, month)[1]
                and 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 60):
            raise soap.invalid_arg("ter:InvalidDateTime", "the date is not a valid date")
        new_time = float(calendar.timegm((year, month, day, hour, minute, second)))
    wing.date_time_type = kind
    wing.daylight_savings = daylight
    if tz is not None:
        wing.timezone = tz
    if new_time is not None:
        await wing.set_clock_offset(new_time - wing.clock.time())  # saves the rest with it
    else:
        await wing.member.save()
    return "<tds:SetSystemDateAndTimeResponse/>"


# -- host and network -----------------------------------------------------------------------
async def get_hostname(call: Call) -> str:
    return (f"<tds:GetHostnameResponse><tds:HostnameInformation>"
            f"<tt:FromDHCP>false</tt:FromDHCP><tt:Name>{text(call.wing.hostname)}</tt:Name>"
            f"</tds:HostnameInformation></tds:GetHostnameResponse>")


async def set_hostname(call: Call) -> str:
    name = child_text(call.body, "Name") or ""
    if not _HOSTNAME.match(name):
        raise soap.invalid_arg("ter:InvalidHostname", "The requested hostname cannot be "
                                                      "accepted by the device.")
    call.wing.hostname = name
    await call.wing.member.save()
    return "<tds:SetHostnameResponse/>"


def mac_address(name: str) -> str:
    """A stable, locally administered MAC of the camera's own (from its name)."""
    digest = hashlib.sha256(f"mac:{name}".encode()).digest()
    octets = [0x02, *digest[:5]]
    return ":".join(f"{b:02x}" for b in octets)


def _address(call: Call) -> str:
    for candidate in (call.host, call.wing.url_host):
        try:
            if candidate and ipaddress.ip_address(candidate).version == 4:
                return candidate
        except ValueError:
            continue
    return "127.0.0.1"


async def get_network_interfaces(call: Call) -> str:
    return (f'<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
            f"<tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name>"
            f"<tt:HwAddress>{mac_address(call.wing.name)}</tt:HwAddress><tt:MTU>1500</tt:MTU>"
            f"</tt:Info><tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual>"
            f"<tt:Address>{_address(call)}</tt:Address><tt:PrefixLength>24</tt:PrefixLength>"
            f"</tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
            f"</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>")


async def get_users(call: Call) -> str:
    users = "".join(f"<tds:User><tt:Username>{text(u.name)}</tt:Username>"
                    f"<tt:UserLevel>{u.level}</tt:UserLevel></tds:User>"
                    for u in call.wing.facts.users)
    return f"<tds:GetUsersResponse>{users}</tds:GetUsersResponse>"


async def get_wsdl_url(call: Call) -> str:
    return ("<tds:GetWsdlUrlResponse><tds:WsdlUrl>http://www.onvif.org/Documents/"
            "Specifications.html</tds:WsdlUrl></tds:GetWsdlUrlResponse>")


async def get_ntp(call: Call) -> str:
    return ("<tds:GetNTPResponse><tds:NTPInformation><tt:FromDHCP>false</tt:FromDHCP>"
            "<tt:NTPManual><tt:Type>DNS</tt:Type><tt:DNSname>pool.ntp.org</tt:DNSname>"
            "</tt:NTPManual></tds:NTPInformation></tds:GetNTPResponse>")


async def get_dns(call: Call) -> str:
    return ("<tds:GetDNSResponse><tds:DNSInformation><tt:FromDHCP>false</tt:FromDHCP>"
            "<tt:DNSManual><tt:Type>IPv4</tt:Type><tt:IPv4Address>"
            f"{_address(call)}</tt:IPv4Address></tt:DNSManual></tds:DNSInformation>"
            "</tds:GetDNSResponse>")


def http_port(call: Call) -> int:
    return int(call.wing.http_url().rsplit(":", 1)[1])


async def get_network_protocols(call: Call) -> str:
    wing = call.wing
    ports = [http_port(call)]
    onvif_port = wing.bound_ports().get("onvif")
    if onvif_port is not None and onvif_port not in ports:
        ports.append(onvif_port)  # ONVIF on a listener of its own: HTTP too
    http = "".join(f"<tt:Port>{p}</tt:Port>" for p in ports)
    rtsp_port = wing.bound_ports().get("rtsp")
    rtsp = (f"<tt:Enabled>true</tt:Enabled><tt:Port>{rtsp_port}</tt:Port>" if rtsp_port
            else "<tt:Enabled>false</tt:Enabled><tt:Port>554</tt:Port>")
    return (f"<tds:GetNetworkProtocolsResponse>"
            f"<tds:NetworkProtocols><tt:Name>HTTP</tt:Name><tt:Enabled>true</tt:Enabled>{http}"
            f"</tds:NetworkProtocols>"
            f"<tds:NetworkProtocols><tt:Name>RTSP</tt:Name>{rtsp}</tds:NetworkProtocols>"
            f"</tds:GetNetworkProtocolsResponse>")


async def get_discovery_mode(call: Call) -> str:
    mode = "Discoverable" if call.wing.discoverable else "NonDiscoverable"
    return (f"<tds:GetDiscoveryModeResponse><tds:DiscoveryMode>{mode}</tds:DiscoveryMode>"
            f"</tds:GetDiscoveryModeResponse>")


async def set_discovery_mode(call: Call) -> str:
    mode = child_text(call.body, "DiscoveryMode")
    if mode not in ("Discoverable", "NonDiscoverable"):
        raise soap.invalid_arg("ter:InvalidArgVal",
                               "DiscoveryMode must be Discoverable or NonDiscoverable")
    await call.wing.set_discoverable(mode == "Discoverable")
    await call.wing.member.save()
    return "<tds:SetDiscoveryModeResponse/>"


async def system_reboot(call: Call) -> str:
    seconds = call.wing.options.boot_seconds
    call.wing.reboot()
    return (f"<tds:SystemRebootResponse><tds:Message>Rebooting in {seconds:g} seconds"
            f"</tds:Message></tds:SystemRebootResponse>")


async def get_endpoint_reference(call: Call) -> str:
    return (f"<tds:GetEndpointReferenceResponse><tds:GUID>{call.wing.endpoint}"
            f"</tds:GUID></tds:GetEndpointReferenceResponse>")


OPERATIONS: dict[str, Operation] = {
    "GetServices": Operation(get_services, "pre_auth"),
    "GetServiceCapabilities": Operation(get_service_capabilities, "pre_auth"),
    "GetCapabilities": Operation(get_capabilities, "pre_auth"),
    "GetDeviceInformation": Operation(get_device_information, "read_system"),
    "GetScopes": Operation(get_scopes, "read_system"),
    "SetScopes": Operation(set_scopes, "write_system"),
    "AddScopes": Operation(add_scopes, "write_system"),
    "RemoveScopes": Operation(remove_scopes, "write_system"),
    "GetSystemDateAndTime": Operation(get_system_date_and_time, "pre_auth"),
    "SetSystemDateAndTime": Operation(set_system_date_and_time, "write_system"),
    "GetHostname": Operation(get_hostname, "pre_auth"),
    "SetHostname": Operation(set_hostname, "write_system"),
    "GetNetworkInterfaces": Operation(get_network_interfaces, "read_system"),
    # READ_SYSTEM_SECRET in ONVIF Core's access classes: administrators only.
    "GetUsers": Operation(get_users, "read_system_secret"),
    "GetWsdlUrl": Operation(get_wsdl_url, "pre_auth"),
    "GetNTP": Operation(get_ntp, "read_system"),
    "GetDNS": Operation(get_dns, "read_system"),
    "GetNetworkProtocols": Operation(get_network_protocols, "read_system"),
    "GetDiscoveryMode": Operation(get_discovery_mode, "read_system"),
    "SetDiscoveryMode": Operation(set_discovery_mode, "write_system"),
    "SystemReboot": Operation(system_reboot, "unrecoverable"),
    "GetEndpointReference": Operation(get_endpoint_reference, "pre_auth"),
}
