"""The ONVIF imaging service (ver20, ``timg``): the one video source's image settings and
their ranges, read only (a fixed-focus camera: no focus moves)."""

from __future__ import annotations

from .. import soap
from .call import Call, Operation
from .xml import SOURCE_TOKEN, child_text


def capabilities() -> str:
    return '<timg:Capabilities ImageStabilization="false"/>'


def _source(call: Call) -> None:
    token = child_text(call.body, "VideoSourceToken")
    if token != SOURCE_TOKEN:
        raise soap.invalid_arg("ter:NoSource",
                               f"The requested VideoSource {token or ''!s:.80} does not exist.")


async def get_service_capabilities(call: Call) -> str:
    return (f"<timg:GetServiceCapabilitiesResponse>{capabilities()}"
            f"</timg:GetServiceCapabilitiesResponse>")


async def get_imaging_settings(call: Call) -> str:
    _source(call)
    return ("<timg:GetImagingSettingsResponse><timg:ImagingSettings>"
            "<tt:BacklightCompensation><tt:Mode>OFF</tt:Mode></tt:BacklightCompensation>"
            "<tt:Brightness>50</tt:Brightness><tt:ColorSaturation>50</tt:ColorSaturation>"
            "<tt:Contrast>50</tt:Contrast><tt:Exposure><tt:Mode>AUTO</tt:Mode></tt:Exposure>"
            "<tt:IrCutFilter>AUTO</tt:IrCutFilter><tt:Sharpness>50</tt:Sharpness>"
            "<tt:WideDynamicRange><tt:Mode>OFF</tt:Mode></tt:WideDynamicRange>"
            "<tt:WhiteBalance><tt:Mode>AUTO</tt:Mode></tt:WhiteBalance>"
            "</timg:ImagingSettings></timg:GetImagingSettingsResponse>")


def _range(tag: str) -> str:
    return f"<tt:{tag}><tt:Min>0</tt:Min><tt:Max>100</tt:Max></tt:{tag}>"


async def get_options(call: Call) -> str:
    _source(call)
    return ("<timg:GetOptionsResponse><timg:ImagingOptions>"
            f"{_range('Brightness')}{_range('ColorSaturation')}{_range('Contrast')}"
            "<tt:IrCutFilterModes>ON</tt:IrCutFilterModes>"
            "<tt:IrCutFilterModes>OFF</tt:IrCutFilterModes>"
            "<tt:IrCutFilterModes>AUTO</tt:IrCutFilterModes>"
            f"{_range('Sharpness')}</timg:ImagingOptions></timg:GetOptionsResponse>")


async def get_move_options(call: Call) -> str:
    _source(call)
    return "<timg:GetMoveOptionsResponse><timg:MoveOptions/></timg:GetMoveOptionsResponse>"


OPERATIONS: dict[str, Operation] = {
    "GetServiceCapabilities": Operation(get_service_capabilities, "pre_auth"),
    "GetImagingSettings": Operation(get_imaging_settings, "read_media"),
    "GetOptions": Operation(get_options, "read_media"),
    "GetMoveOptions": Operation(get_move_options, "read_media"),
}
