"""The ``Format`` filter's .NET number and date formats (en-US culture)."""

from __future__ import annotations

from snapshots.octostache import render


def test_formatting_details() -> None:
    assert render("#{N | Format N2}", {"N": "-1234.5"}) == "-1,234.50"
    assert render("#{N | Format F2}", {"N": "2.345"}) == "2.35"  # decimal: midpoint away from zero
    assert render('#{N | Format "0.00"}', {"N": "3"}) == "3.00"
    assert render("#{N | Format C}", {"N": "-5"}) == "-$5.00"  # .NET 5+ on ICU; .NET Framework writes ($5.00)
    assert render("#{N | Format Int32 X}", {"N": "255"}) == "FF"
    assert render("#{N | Format E}", {"N": "0"}) == "0.000000E+000"
    assert render("#{N | Format Double F2}", {"N": "1.005"}) == "1.00"  # .NET Core 3+: the exact binary value
    assert render('#{D | Format "yyyy-MM-dd HH:mm:ss.fff"}', {"D": "2024-03-05T07:08:09.1234567"}) == (
        "2024-03-05 07:08:09.123")
    assert render('#{D | Format "dddd d MMMM yy, h tt"}', {"D": "3/5/2024 7:08 PM"}) == "Tuesday 5 March 24, 7 PM"
    assert render("#{D | Format DateTimeOffset o}", {"D": "2024-03-05 07:08:09Z"}) == (
        "2024-03-05T07:08:09.0000000+00:00")
    assert render("#{D | Format u}", {"D": "2024-03-05T07:08:09+02:00"}) == "2024-03-05 05:08:09Z"
