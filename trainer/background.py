"""The ambient clips that ``background_p`` mixes under training clips: the train split's own noise.

Only the train split is used (never val or eval), and only clips every one of
whose labels is an ambient, stationary sound that a person at a microphone
has behind them: machines, engines, weather, water, traffic. A clip that also
carries, say, Speech is not background.
"""

from __future__ import annotations

import numpy as np

AMBIENT_LABELS = frozenset({
    "Mechanisms", "Engine", "Idling", "Mechanical_fan", "Air_conditioning",
    "Rain", "Raindrop", "Wind", "Thunderstorm", "Thunder",
    "Water", "Waves_and_surf", "Ocean", "Stream", "Boiling", "Frying_(food)",
    "Vehicle", "Motor_vehicle_(road)", "Car", "Traffic_noise_and_roadway_noise", "Car_passing_by",
    "Rail_transport", "Train", "Subway_and_metro_and_underground", "Microwave_oven",
})


def ambient_clips(targets: np.ndarray, vocabulary: tuple[str, ...] | list[str]) -> np.ndarray:
    """Indices of the clips (rows of the uint8 [N, K] ``targets``) whose labels are all ambient."""
    ambient = np.array([name in AMBIENT_LABELS for name in vocabulary], dtype=bool)
    t = np.asarray(targets) > 0
    has_label = t.any(axis=1)
    only_ambient = ~(t & ~ambient[None, :]).any(axis=1)
    return np.flatnonzero(has_label & only_ambient)
