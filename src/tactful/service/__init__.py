"""The Faust worker shell and its composition root."""
