"""The ONVIF services a camera serves over SOAP 1.2: device, media, media2, events, imaging."""
