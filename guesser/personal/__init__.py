"""Personal labels: a sound of the user's own, taught from a few recordings.

``guesser teach`` turns 3–20 examples into a small linear classifier over the
shipped models' embeddings (:mod:`.probe`), stored in the user data folder
(:mod:`.store`), and every place that shows a guess scores it next to the
AudioSet labels (:mod:`.matcher`). How it is made: :mod:`.teach`.
"""
