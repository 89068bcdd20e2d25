"""HTML report of a run: images, questions, answers, rewards, curves."""
