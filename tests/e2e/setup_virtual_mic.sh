#!/usr/bin/env bash
# A virtual microphone for tests/e2e/test_virtual_mic.py (idempotent; run as root in CI).
#
#   paplay -d vsink clip.ogg  ──►  null sink "vsink"  ──►  vsink.monitor  ──►  virtual source "vmic" (default source)
#                                                                               └─ PortAudio/sounddevice device "pulse"
#
# Needs: pulseaudio pulseaudio-utils (apt), which bring ALSA's pulse plugin; libportaudio2 for sounddevice.
set -euo pipefail

for tool in pulseaudio pactl paplay; do
  command -v "$tool" >/dev/null || { echo "setup_virtual_mic: $tool not installed (apt-get install pulseaudio pulseaudio-utils)" >&2; exit 1; }
done

if ! pactl info >/dev/null 2>&1; then
  # -n: no default.pa (no hardware probing); root is fine for a throw-away CI server (it warns, then runs).
  pulseaudio --daemonize=yes --exit-idle-time=-1 -n \
    --load=module-native-protocol-unix \
    --load=module-always-sink 2>/dev/null || true
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
  pactl info >/dev/null 2>&1 || { echo "setup_virtual_mic: pulseaudio did not start" >&2; exit 1; }
fi

pactl list short sinks | grep -qw vsink || \
  pactl load-module module-null-sink sink_name=vsink sink_properties=device.description=guesser-virtual-speaker >/dev/null
pactl list short sources | grep -qw vmic || \
  pactl load-module module-virtual-source source_name=vmic master=vsink.monitor >/dev/null
pactl set-default-source vmic
pactl set-source-volume vmic 100%
pactl set-sink-volume vsink 100%
echo "virtual microphone ready: play into 'vsink', record from 'vmic' (sounddevice device 'pulse')"
