"""The view registry (app/views.py): the page's tabs and what each one draws come from one entry,
every `show` takes the one ViewContext, and a view name with no entry is an error, never another view.
"""

import inspect

import pytest
import streamlit as st
from test_apptest import LABELS, VIEW_CONTAINERS, new_app, shown

from app import views


def test_the_registry_is_the_list_of_views():
    assert set(VIEW_CONTAINERS) == set(views.VIEWS)  # test_apptest.VIEW_CONTAINERS names every view's
    labels = [v.label for v in views.VIEWS.values()]
    assert len(set(labels)) == len(labels) and all(labels)
    # st.tabs opens its first tab when the state holds no valid label: that must be the default.
    assert next(iter(views.VIEWS)) == views.DEFAULT_VIEW
    for name, v in views.VIEWS.items():
        assert views.get(name) is v and views.name_of(v.label) == name
        (param,) = inspect.signature(v.show).parameters.values()  # one argument: the context
        # A view drawn without an input (needs_input False) is handed None then.
        expected = ("ViewContext", views.ViewContext) if v.needs_input else ("ViewContext | None",)
        assert param.annotation in expected, name


@pytest.mark.parametrize("name", ["figure5", "Routing", "", "Routing by agreement"])
def test_a_name_with_no_entry_is_an_error(name):
    with pytest.raises(views.UnknownView, match="no view named"):
        views.get(name)
    with pytest.raises(views.UnknownView):
        views.open_view(name)
    assert issubclass(views.UnknownView, KeyError)


def test_a_label_with_no_entry_is_an_error():
    with pytest.raises(views.UnknownView, match="no view has the tab label 'Figure 5'"):
        views.name_of("Figure 5")


def probe_show(ctx: views.ViewContext) -> None:
    """A view that is not one of the page's: it writes what it was given."""
    with st.container(key="probe"):
        st.markdown(f"probe: digit {ctx.digit}, {ctx.iterations} iterations, {ctx.res['coupling'].shape}")


@pytest.fixture
def probe(monkeypatch):
    """A fifth view, added to the registry the way a new view is: one entry."""
    monkeypatch.setitem(views.VIEWS, "probe", views.View("Probe", probe_show))


def test_a_new_view_is_one_entry_and_renders_itself_only(shipped, probe):
    """The page draws the open view from its own entry: a view the page has no code for is drawn
    by its own `show`, not by a fallback branch (the old dispatch drew the lab for it)."""
    at = new_app()
    at.query_params.update({"sample": "7", "iters": "2", "view": "probe"})
    at.run()
    assert not at.exception and at.query_params["view"] == "probe"
    assert at.session_state[views.VIEW_KEY] == "Probe"
    assert [t.label for t in at.tabs] == [v.label for v in views.VIEWS.values()]
    assert shown(at, "probe") and not any(shown(at, key) for key in VIEW_CONTAINERS.values())
    digit = int(at.metric[0].value)
    assert digit == LABELS[7]
    assert at.container(key="probe").markdown[0].value == f"probe: digit {digit}, 2 iterations, (2, 1152, 10)"


@pytest.fixture
def error_details():
    """The page's error details, which .streamlit/config.toml hides from visitors, for this test."""
    from streamlit import config

    before = config.get_option("client.showErrorDetails")
    config.set_option("client.showErrorDetails", "full")
    yield
    config.set_option("client.showErrorDetails", before)


def test_a_tab_label_with_no_entry_is_an_error_not_another_view(shipped, error_details):
    """Only the page's code writes the tabs' state (the tabs, views.open_view, a checked share link):
    a label with no view is a programming error, and the page says so instead of drawing a view."""
    at = new_app()
    at.query_params["sample"] = "7"
    at.session_state[views.VIEW_KEY] = "Figure 5"
    at.run()
    assert [e.proto.type for e in at.exception] == ["app.views.UnknownView"]
    assert "no view has the tab label 'Figure 5'" in at.exception[0].value
    assert not any(shown(at, key) for key in VIEW_CONTAINERS.values())
