"""What every emulated camera shares toward camera software: WS-Discovery, the ONVIF services,
RTSP/RTP streaming and snapshots. A camera kind describes itself (``facts.VideoFacts``) and owns
one ``wing.VideoWing``; nothing here names a vendor."""
