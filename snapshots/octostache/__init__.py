"""Octopus-compatible ("Octostache") ``#{...}`` variable substitution, evaluated by Jinja2's sandbox.

Why a translation rather than an interpreter: the template is tokenized and parsed here, then compiled to Jinja
source in which every piece of user text (literal text, variable names, quoted filter arguments) is a constant
handed in as data, never Jinja syntax.  Jinja's ``ImmutableSandboxedEnvironment`` does the evaluation (output,
``if``/``for`` blocks with their ``loop`` specials, filter calls, ``calc`` arithmetic), so a template can neither
reach Python objects (``#{__class__}`` is just a variable name) nor be read as Jinja (``{{``, ``{%``, ``{#``
are ordinary characters).  Variable values may themselves hold ``#{...}`` and are evaluated recursively, once
per render; what a substitution outputs is never scanned again.

Octopus behaviour followed (docs "Variable substitutions" / "Variable filters", OctopusDeploy/Octostache and its
test fixtures, run as ``tests/snapshots/octostache/test_octostache_fixtures.py``): names are case-insensitive;
``##{`` escapes; filters are case-insensitive and chain left to right; ``#{if}``/``#{elseif}``/``#{unless}``/
``#{else}`` with ``==``/``!=`` between filtered variables and quoted literals; ``#{each}`` over comma lists, JSON
and ``Name[index]...`` groups with ``Octopus.Template.Each.Index|First|Last``; JSON values indexed by name;
``#{calc}``; ``.NET`` ``Format`` strings in the en-US culture.  Octopus mode (``strict=False``) prints what
Octostache prints, echoes included; strict mode raises instead of echoing.  The deliberate deviations (unknown
filters and unclosed blocks raise, Markdown is not implemented) are listed in ``DEVIATIONS.md``.

The seams: ``syntax`` (tokens, tree, scanning helpers), ``parser``, ``compile`` (the Jinja translation),
``runtime`` (what the compiled template calls), ``filters``, ``dotnet_formats`` (.NET number and date formats),
``table`` (the variable table) and ``api`` (the functions below).
"""

from snapshots.octostache.api import escape, evaluate_condition, referenced_names, render
from snapshots.octostache.runtime import is_truthy
from snapshots.octostache.syntax import canonical_name, variable_key
from snapshots.octostache.table import VariableTable

__all__ = ["VariableTable", "canonical_name", "escape", "evaluate_condition", "is_truthy", "referenced_names",
           "render", "variable_key"]
