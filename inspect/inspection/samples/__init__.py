"""Sample data sets with ground truth, drawn with the stages' own geometry: wafer lots (whole-wafer frames, die
truth, the manifest ``inspect grade`` reads) and wafer maps of the nine WM-811K patterns. For tests, demos and
training data; the runtime never imports them."""
