#!/bin/sh
# Makes the video wing's committed media (emulators/core/video/media/): per resolution the
# cameras use, a 2 s H.264 Annex-B loop (15 fps, a keyframe every 30 frames, no B-frames,
# SPS and PPS before every IDR so a stream can start on any keyframe) and a one-frame JPEG.
# Simple moving content at a low bitrate keeps each file small. Run from the repository root.
set -eu
out=emulators/core/video/media
mkdir -p "$out"
for size in 2560x1440 1920x1080 1280x720 640x360; do
  w=${size%x*}
  h=${size#*x}
  # Bitrate by area (about 0.01 bits per pixel per frame, at least 120 kbit/s): the test
  # pattern stays legible and the loops stay around 30-150 KB.
  kbps=$(( w * h / 6000 ))
  [ "$kbps" -ge 120 ] || kbps=120
  ffmpeg -hide_banner -loglevel error -y -f lavfi \
    -i "testsrc2=size=${size}:rate=15:duration=2" \
    -c:v libx264 -profile:v main -tune zerolatency -preset veryfast -pix_fmt yuv420p \
    -bf 0 -g 30 -keyint_min 30 -sc_threshold 0 \
    -b:v "${kbps}k" -maxrate "$(( kbps * 2 ))k" -bufsize "$(( kbps * 2 ))k" \
    -x264-params repeat-headers=1:aud=0 \
    -bsf:v h264_mp4toannexb -f h264 "$out/${size}.h264"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=${size}:rate=1" \
    -frames:v 1 -q:v 6 -pix_fmt yuvj420p "$out/${size}.jpg"
done
ls -l "$out"
