"""RTSP (RFC 2326) with RTP/RTCP H.264 (RFC 6184), TCP-interleaved and UDP unicast."""
