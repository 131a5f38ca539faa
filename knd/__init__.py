"""knd: speech emotion recognition on RAVDESS."""
