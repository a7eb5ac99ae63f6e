"""A page that does not exist: the signed-in person keeps the nav, a stranger learns nothing."""

from __future__ import annotations


def test_a_signed_in_person_sees_the_nav_on_a_404_page(signed_in):
    client = signed_in("viewer")
    response = client.get("/no-such-page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert 'aria-label="Main"' in html and 'href="/services"' in html
    assert "user-viewer" in html  # the sign-out corner names who is signed in


def test_a_stranger_gets_a_404_page_without_the_nav(app):
    response = app.test_client().get("/no-such-page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert 'aria-label="Main"' not in html and "Sign out" not in html


def test_the_api_still_answers_json_for_an_unknown_path(signed_in):
    response = signed_in("viewer").get("/api/v1/no-such-thing")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
