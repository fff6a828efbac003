"""Key bindings, the game's rules and how teaching works, one key away (? or F1) from every screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from rich.markdown import Markdown
from textual.widgets import Static

from guesser.game import FAMILY_POINTS, HEARD, LABEL_POINTS, LABEL_TOP10_POINTS, ROUNDS, STREAK_CAP, STREAK_STEP
from guesser.personal.probe import MIN_EXAMPLES
from guesser.recorder import SILENCE_DBFS
from guesser.tui.screens.teach import DEFAULT_TAKES

HELP = f"""\
# guesser: keys

| key | main screen |
|---|---|
| **space** / **enter** | record (a short countdown first), then see the guesses |
| **l** | listen: classify what the microphone hears, live, 8 times a second, with a log of the sounds heard |
| **g** | play *guess a noise* |
| **t** | teach it your own sound (below) |
| **p** | your sounds: the personal labels you taught (forget **f**, re-embed **e**) |
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
Your own sounds are targets too: heard (score ≥ {HEARD:.1f}) scores like label rank 1, not heard scores 0.

# Teach it your own sound

**t**, then name it (a kettle, your doorbell) and choose how many takes (default {DEFAULT_TAKES}, at least
{MIN_EXAMPLES}). **space** records a take after the countdown; **r** replays the highlighted take, **x** drops it
(or keeps it again); a silent take is not kept. **l** learns it (a few seconds), with a leave-one-out estimate;
then **space** tries it: one more take, and whether it was heard. From then on every guess shows it
(marked ✓ when heard). It knows the sound as you recorded it, in that room with that microphone; very short or
very varied sounds teach less. A label belongs to the installed models: when they change, **p** then **e**
embeds its stored takes again.

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
