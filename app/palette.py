"""The page's colours and colour scales, shared by its pictures (app/images.py) and its Plotly
charts (app/figures.py), so a digit, a sign or a threshold looks the same in both.

Every scale is explicit, because importing Streamlit changes Plotly's default template and a
chart should look the same in tests, notebooks and the app.
"""

from capsnet.atlas import LOCAL, NO_CHANGE, WORDS

WINNER = "#e4572e"  # the predicted / chosen digit; also the s_j path (orange-red)
OTHER = "#8a9ab0"
THRESHOLD = "#2e4057"
LABEL = "#1f2430"  # dark text on light backgrounds
TEXT = "#31333f"  # Streamlit's body text
MARKER_EDGE = "#9aa3ad"  # the outline of the votes' markers
REST_NODE = "#c9d1dc"  # the parse tree's "other" node
GRIDLINES = "#ebf0f8"  # the Plotly charts' grid
M_PLUS, M_MINUS = 0.9, 0.1  # margin-loss thresholds (Eq. 4)
DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
NO_ROUTING = "#b8c2d1"
ROUTED = "#2e4057"

COUPLING_SCALE = "Viridis"  # c on 0..1
PRIMARY_SCALE = "Viridis"  # |u_i|
ACTIVATION_SCALE = "Inferno"  # ReLU maps: black (silent) to yellow (strongest)
HEAT_SCALE = [[0.0, "#fff7ec"], [0.5, "#fc8d59"], [1.0, "#7f0000"]]
OVERLAY_SCALE = [[0.0, "rgba(255,69,0,0)"], [0.3, "rgba(255,140,0,0.35)"], [1.0, "rgba(255,215,0,0.85)"]]
# Signed quantities (delta c = c - 0.1, logits b, a pose change): blue below 0, white at 0, red
# above, as pixel_arrays.diverging_rgb.
DIVERGING = [[0.0, "rgb(33,77,191)"], [0.5, "rgb(255,255,255)"], [1.0, "rgb(204,26,38)"]]
# What a pose dimension mostly does, by family of capsnet.atlas's labels, each with a light and a dark
# end: the darker, the stronger the effect.
ATLAS_FAMILIES = {
    "position": ((*WORDS["x"], *WORDS["y"]), "#e3ecf8", "#5b8fd0"),
    "slant": (WORDS["slant"], "#fbe8d5", "#e08a3c"),
    "size": ((*WORDS["width"], *WORDS["height"]), "#e2f2de", "#5fae55"),
    "thickness": (WORDS["ink"], "#ece3f5", "#9a6cc8"),
    "local part": ((LOCAL,), "#f8dede", "#d65c5c"),
    "no visible change": ((NO_CHANGE,), "#f2f2f2", "#f2f2f2"),
}
