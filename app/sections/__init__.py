"""The page's sections, in the order the page shows them. Each module has one `show(...)` that
takes what it shows (the forward pass's arrays, the input, the user's choices) and draws it."""
