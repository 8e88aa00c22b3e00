"""How the pages look, measured in Chromium: contrast in the light and the dark scheme, a focus
ring that cannot pass for an error, a header that says where you are and who you are, tap
targets a thumb can hit, and admin pages that read as words rather than codes."""

import re

import pytest

from browsing import account_link, expect, header, log_in, log_out, submit
from e2e_common import DESKTOP

pytestmark = pytest.mark.sqlite_only
SCHEMES = ["light", "dark"]
PHONE_390 = {"width": 390, "height": 844}
THUMB_PX = 44  # WCAG 2.5.5's target size, and Apple's and Google's guidance for a tap

# WCAG 2.x relative luminance and contrast ratio, and the background an element is seen
# against: the first box, from the element up, that paints a colour of its own.
COLOUR_MATHS = r"""
const rgb = (value) => (value.match(/[\d.]+/g) || []).map(Number);
const channel = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
const ratio = (a, b) => {
  const [hi, lo] = [luminance(rgb(a)), luminance(rgb(b))].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const painted = (colour) => { const c = rgb(colour); return c.length === 3 || (c.length === 4 && c[3] > 0); };
const backdrop = (el) => {
  for (let box = el; box; box = box.parentElement) {
    const colour = getComputedStyle(box).backgroundColor;
    if (painted(colour)) return colour;
  }
  return "rgb(255, 255, 255)";
};
const seen = (el) => { const r = el.getBoundingClientRect(); return r.width > 1 && r.height > 1; };
"""
# Every piece of visible text with its colour against what is behind it (4.5:1 asked, WCAG 1.4.3).
TEXT_CONTRAST = "() => {" + COLOUR_MATHS + r"""
  const found = [];
  for (const el of document.body.querySelectorAll("*")) {
    const ownText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!ownText || !seen(el) || el.closest(".skip-link, .visually-hidden, [hidden]")) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible") continue;
    found.push({text: el.textContent.trim().slice(0, 40), tag: el.tagName.toLowerCase(), cls: el.className,
                ratio: ratio(style.color, backdrop(el))});
  }
  return found;
}"""
# Each text field's and menu's border against the box around it and against the page (3:1, WCAG 1.4.11).
FIELD_CONTRAST = "() => {" + COLOUR_MATHS + r"""
  const page = backdrop(document.body);
  const controls = "input:not([type=hidden], [type=checkbox], [type=radio]), select, textarea";
  return [...document.querySelectorAll(controls)].filter(seen).map((el) => {
      const style = getComputedStyle(el);
      const sides = ["Top", "Right", "Bottom", "Left"].map((side) => style[`border${side}Color`]);
      const around = backdrop(el.parentElement);
      return {id: el.id, againstBox: Math.min(...sides.map((c) => ratio(c, around))),
              againstPage: Math.min(...sides.map((c) => ratio(c, page)))};
    });
}"""
HUE = r"""(colour) => {
  const [r, g, b] = (colour.match(/[\d.]+/g) || []).map(Number).map((c) => c / 255);
  const max = Math.max(r, g, b), min = Math.min(r, g, b), d = max - min;
  if (d === 0) return null;
  const h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  return (h * 60 + 360) % 360;
}"""
# How a link looks: its weight, and the bar under it (a bottom border that paints).
STYLE_OF = r"""(el) => { const s = getComputedStyle(el);
  const paints = s.borderBottomStyle !== "none" && !/rgba\(.*, 0\)$/.test(s.borderBottomColor);
  return {weight: Number(s.fontWeight), bar: paints ? parseFloat(s.borderBottomWidth) : 0}; }"""


@pytest.fixture
def admin(new_user):
    return new_user("ada", "admin", email=True)


def in_scheme(new_context, scheme: str, **options):
    return new_context(color_scheme=scheme, **options).new_page()


def low_text(page) -> list[dict]:
    return [t for t in page.evaluate(TEXT_CONTRAST) if t["ratio"] < 4.5]


def faint_fields(page) -> list[dict]:
    return [f for f in page.evaluate(FIELD_CONTRAST) if min(f["againstBox"], f["againstPage"]) < 3]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_text_and_field_borders_meet_wcag_contrast_on_every_kind_of_page(new_context, admin, scheme, watch):
    watch.expect_status(401)
    watch.expect_status(400)
    page = in_scheme(new_context, scheme)
    problems = []

    def measure(where: str) -> None:
        problems.extend(f"{where}: text {t}" for t in low_text(page))
        problems.extend(f"{where}: field {f}" for f in faint_fields(page))

    log_in(page, admin, password="not the password")  # the alert, the fields, the links, the muted aside
    measure("failed login")
    page.goto("/auth/register")
    submit(page, page.get_by_role("button", name="Sign up"))  # field errors
    measure("refused sign-up")
    log_in(page, admin)
    for path in ["/", "/account", "/account/security", "/admin/users", "/admin/events"]:
        page.goto(path)
        measure(path)
    page.goto(f"/admin/users?q={admin.username}")
    submit(page, page.get_by_role("main").get_by_role("link", name=admin.username, exact=True))
    measure("admin user page")
    log_out(page)  # the notice
    measure("logged out")

    assert not problems, "\n".join(problems)


def test_dark_mode_is_dark_and_tells_form_controls_to_follow(new_context):
    light, dark = in_scheme(new_context, "light"), in_scheme(new_context, "dark")
    for page in (light, dark):
        page.goto("/auth/login")
    background = "() => getComputedStyle(document.documentElement).backgroundColor"
    luminance = "(c) => { const [r, g, b] = c.match(/\\d+/g).map(Number); return (r + g + b) / 3; }"

    assert "dark" in dark.evaluate("() => getComputedStyle(document.documentElement).colorScheme")
    assert dark.evaluate(f"({luminance})(({background})())") < 60
    assert light.evaluate(f"({luminance})(({background})())") > 200


def test_print_stays_light_in_dark_mode(new_context, admin):
    page = in_scheme(new_context, "dark")
    log_in(page, admin)
    page.goto("/account")
    page.emulate_media(media="print", color_scheme="dark")

    colours = page.evaluate("""() => [document.documentElement, document.querySelector("main .card")]
      .map((el) => getComputedStyle(el).backgroundColor)""")
    assert colours == ["rgb(255, 255, 255)"] * 2
    assert page.evaluate("() => getComputedStyle(document.querySelector('main')).color") == "rgb(0, 0, 0)"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_focus_ring_cannot_pass_for_an_error(new_context, scheme, watch):
    """Measured as hue: an orange ring beside a red error (the old pair, 13 degrees apart) reads as
    one warning colour. Sixty degrees or more puts the ring in another colour family (blue or violet
    against red), which stays apart for red-green colour blindness too, whose blue-yellow axis is
    intact. The error state carries a mark besides colour: a heavier edge and a written prefix."""
    watch.expect_status(400)
    page = in_scheme(new_context, scheme)
    page.goto("/auth/register")
    submit(page, page.get_by_role("button", name="Sign up"))
    invalid = page.locator("input[aria-invalid=true]").first
    valid = page.locator("input:not([aria-invalid]):not([type=hidden])").first
    page.keyboard.press("Tab")  # keyboard focus, so :focus-visible applies
    focused = page.evaluate("() => document.activeElement !== document.body")
    ring = page.evaluate("() => getComputedStyle(document.activeElement).outlineColor")
    error = invalid.evaluate("(el) => getComputedStyle(el).borderLeftColor")
    hue = lambda colour: page.evaluate(f"({HUE})({colour!r})")  # noqa: E731

    distance = abs(hue(ring) - hue(error))
    assert focused and min(distance, 360 - distance) >= 60, (ring, error)
    assert invalid.evaluate("(el) => parseFloat(getComputedStyle(el).borderLeftWidth)") >= 2 * valid.evaluate(
        "(el) => parseFloat(getComputedStyle(el).borderLeftWidth)")
    message = page.locator(".field-error").first
    assert "Error" in message.evaluate("(el) => getComputedStyle(el, '::before').content")


def test_the_header_says_who_is_signed_in_and_links_to_their_account(page, admin):
    log_in(page, admin)

    link = header(page).get_by_role("link", name=f"Signed in as {admin.username}", exact=True)
    expect(link).to_be_visible()
    submit(page, link)
    expect(page).to_have_url(re.compile(r"/account$"))


def test_the_current_page_is_marked_in_the_header_and_the_admin_menu(page, admin):
    log_in(page, admin)
    page.goto("/admin/users")
    admin_menu = page.get_by_role("navigation", name="Administration")
    here, there = admin_menu.get_by_role("link", name="Users"), admin_menu.get_by_role("link", name="Audit log")
    section, elsewhere = header(page).get_by_role("link", name="Admin"), account_link(page, admin.username)

    expect(here).to_have_attribute("aria-current", "page")
    expect(there).not_to_have_attribute("aria-current", "page")
    expect(section).to_have_attribute("aria-current", "page")
    expect(elsewhere).not_to_have_attribute("aria-current", "page")
    for current, other in [(here, there), (section, elsewhere)]:
        marked, plain = current.evaluate(STYLE_OF), other.evaluate(STYLE_OF)
        assert marked["weight"] >= 600 > plain["weight"], (marked, plain)
        assert marked["bar"] >= 2 > plain["bar"], (marked, plain)

    page.goto("/admin/events")
    expect(admin_menu.get_by_role("link", name="Audit log")).to_have_attribute("aria-current", "page")
    expect(header(page).get_by_role("link", name="Admin")).to_have_attribute("aria-current", "true")
    page.goto("/account")
    expect(account_link(page, admin.username)).to_have_attribute("aria-current", "page")
    expect(header(page).get_by_role("link", name="Admin")).not_to_have_attribute("aria-current", "page")


def test_on_a_phone_every_header_and_menu_control_is_a_thumb_high(new_context, admin):
    page = new_context(viewport=PHONE_390).new_page()
    page.goto("/auth/login")
    short = {}

    def measure(locator, where: str) -> None:
        for i in range(locator.count()):
            box = locator.nth(i).bounding_box()
            if box is not None and box["height"] < THUMB_PX:
                short[f"{where} {locator.nth(i).inner_text()!r}"] = box["height"]

    measure(header(page).get_by_role("link"), "anonymous header")
    log_in(page, admin)
    page.goto("/admin/users")
    measure(header(page).get_by_role("link"), "header")
    measure(header(page).get_by_role("button"), "header")
    measure(page.get_by_role("navigation", name="Administration").get_by_role("link"), "admin menu")
    page.goto("/account")
    measure(page.locator("main button"), "account page")

    assert not short, short


def test_the_audit_filter_names_events_as_the_table_does_and_sits_in_one_row(page, admin):
    log_in(page, admin)
    page.goto("/admin/events")
    kind = page.get_by_label("What")
    options = dict(zip(kind.locator("option").evaluate_all("(os) => os.map((o) => o.value)"),
                       kind.locator("option").all_inner_texts()))

    assert options["login_failed"] == "Failed login"
    assert options["login"] == "Logged in"
    assert not [text for text in options.values() if "_" in text]
    kind.select_option(label="Failed login")
    submit(page, page.get_by_role("button", name="Filter"))
    expect(page.get_by_label("What")).to_have_value("login_failed")

    username, button = page.get_by_label("Username"), page.get_by_role("button", name="Filter")
    boxes = [locator.bounding_box() for locator in (kind, username, button)]
    assert {round(b["height"]) for b in boxes} == {round(boxes[2]["height"])}, boxes
    assert {round(b["y"]) for b in boxes} == {round(boxes[2]["y"])}, boxes
    labels = [page.locator(f"label[for={id}]").bounding_box()["y"] for id in ("kind", "user")]
    assert round(labels[0]) == round(labels[1]), labels


def test_the_users_search_label_is_bold_like_every_other_label(page, admin):
    log_in(page, admin)
    page.goto("/admin/users")

    weight = page.get_by_text("Find users whose name or email starts with").evaluate(
        "(el) => Number(getComputedStyle(el).fontWeight)")
    assert weight >= 600


def test_the_login_page_names_the_site_above_the_form_and_describes_itself(page):
    page.goto("/auth/login")

    brand = page.locator(".login-brand")
    expect(brand).to_have_text("authsite")
    assert brand.bounding_box()["y"] < page.locator("main .card").bounding_box()["y"]
    description = page.locator("meta[name=description]").get_attribute("content")
    assert "authsite" in description


@pytest.mark.parametrize("path", ["/auth/login", "/admin/users"])
def test_a_desktop_picture_in_dark_mode(new_context, admin, screenshots, path):
    """Not a check: the pictures a person looks at (screenshots/look-*.png, not kept in docs/)."""
    page = in_scheme(new_context, "dark", viewport=DESKTOP)
    if path != "/auth/login":
        log_in(page, admin)
    page.goto(path)
    page.screenshot(path=screenshots / f"look-dark{path.replace('/', '-')}.png", full_page=True)
