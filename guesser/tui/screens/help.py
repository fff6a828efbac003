"""Key bindings and the game's rules, one key away (? or F1) from every screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from rich.markdown import Markdown
from textual.widgets import Static

from guesser.game import FAMILY_POINTS, LABEL_POINTS, LABEL_TOP10_POINTS, ROUNDS, STREAK_CAP, STREAK_STEP
from guesser.recorder import SILENCE_DBFS

HELP = f"""\
# guesser: keys

| key | main screen |
|---|---|
| **space** / **enter** | record (a short countdown first), then see the guesses |
| **l** | listen: classify what the microphone hears, live, every second |
| **g** | play *guess a noise* |
| **d** | pick the input device |
| **r** / **s** / **S** | replay / save / save as… the last recording |
| **h** | move to the history list (enter reopens a recording) |
| **?** / **F1** | this help |
| **q** | quit |

On a result: **space** records again, **r** replays, **s** saves (WAV + JSON), **escape** goes back.

# The game

Make the sound you are shown. Points by where it lands in the guesses:
label rank 1 → {LABEL_POINTS[1]}, 2 → {LABEL_POINTS[2]}, 3 → {LABEL_POINTS[3]}, 4–10 → {LABEL_TOP10_POINTS};
family rank 1 → {FAMILY_POINTS[1]}, 2 → {FAMILY_POINTS[2]}. A label in the top 3 (or a family at rank 1) is a hit;
each hit in a row adds +{STREAK_STEP} per earlier hit (at most +{STREAK_CAP}). {ROUNDS} rounds a game.
**p** picks the target yourself, **n** draws another, **escape** leaves.

# Trouble?

*I heard nothing*: the recording stayed below {SILENCE_DBFS:.0f} dBFS: unmute the microphone or pick another
device (**d**). *No microphone*: try `guesser play --file clip.wav`. More in docs/app.md.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Markdown(HELP), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
