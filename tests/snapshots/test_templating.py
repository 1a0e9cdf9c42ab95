"""Octostache-compatible substitution (snapshots.templating).

The conformance table's expected outputs are copied from Octopus's documentation and from Octostache's own
test fixtures; each group names its source.  Where .NET output depends on the culture, the en-US culture is
used (the one Octopus's documentation shows).  Known differences from Octopus are tested explicitly at the end.
"""

from __future__ import annotations

import base64
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapshots.errors import TemplateError
from snapshots.templating import escape, evaluate_condition, is_truthy, referenced_names, render

P = pytest.param

CONFORMANCE = [
    # --- Octopus docs, "Variable filters" (octopus.com/docs/projects/variables/variable-filters;
    #     OctopusDeploy/docs src/pages/docs/projects/variables/variable-filters.md)
    P("<h3>#{ProjectName | HtmlEscape}</h3>", {"ProjectName": "You & I"}, "<h3>You &amp; I</h3>", id="f-intro"),
    P("#{MyVar | Format C}", {"MyVar": "4.3"}, "$4.30", id="f-format-currency-en-US"),
    P("#{MyVar | Format yyyy}", {"MyVar": "2030/05/22 09:05:00"}, "2030", id="f-format-year"),
    # The docs feed #{Octopus.Deployment.Created} in; this value reproduces the documented outputs.
    P('#{MyVar | Format "MM/dd/yyyy"}', {"MyVar": "2020-01-01T11:09:38+01:00"}, "01/01/2020", id="f-format-date"),
    P('#{MyVar | Format "hh:mm:ss tt zz"}', {"MyVar": "2020-01-01T11:09:38+01:00"}, "11:09:38 AM +01",
      id="f-format-time"),
    P("#{MyVar | ToLower}", {"MyVar": "Automated Deployment"}, "automated deployment", id="f-tolower"),
    P("#{MyVar | ToUpper}", {"MyVar": "Automated Deployment"}, "AUTOMATED DEPLOYMENT", id="f-toupper"),
    P("#{MyVar | Replace b}", {"MyVar": "abc"}, "ac", id="f-replace-1"),
    P("#{MyVar | Replace b X}", {"MyVar": "abc"}, "aXc", id="f-replace-2"),
    P('#{MyVar | Replace "a b" X}', {"MyVar": "a b c"}, "X c", id="f-replace-3"),
    P('#{MyVar | Replace "[0-9]+" X}', {"MyVar": "ab12c3"}, "abXcX", id="f-replace-4"),
    P('#{MyVar | Replace "(.)b(.)" "$2X$1" }', {"MyVar": "abc"}, "cXa", id="f-replace-5"),
    P("#{MyVar | Replace #{match} #{replace}}", {"MyVar": "abc", "match": "b", "replace": "_"}, "a_c",
      id="f-replace-6"),
    P("#{MyVar | Replace #{match} _}", {"MyVar": "abc", "match": "b"}, "a_c", id="f-replace-7"),
    P("#{MyVar | Substring 8 6}", {"MyVar": "Octopus Deploy"}, "Deploy", id="f-substring-1"),
    P("#{MyVar | Substring 7}", {"MyVar": "Octopus Deploy"}, "Octopus", id="f-substring-2"),
    P("#{MyVar | Substring 2 3}", {"MyVar": "Octopus Deploy"}, "top", id="f-substring-3"),
    # The docs draw the blanks of "···Bar···" as middle dots.
    P("#{MyVar | Trim}", {"MyVar": "   Bar   "}, "Bar", id="f-trim"),
    P("#{MyVar | Trim start}", {"MyVar": "   Bar   "}, "Bar   ", id="f-trim-start"),
    P("#{MyVar | Trim end}", {"MyVar": "   Bar   "}, "   Bar", id="f-trim-end"),
    P("#{MyVar | Truncate 7}", {"MyVar": "Octopus Deploy"}, "Octopus...", id="f-truncate-1"),
    P("#{MyVar | Truncate 7}", {"MyVar": "abc"}, "abc", id="f-truncate-2"),
    P("#{MyVar | Match abc}", {"MyVar": "abc"}, "true", id="f-match-1"),
    P("#{MyVar | Match def}", {"MyVar": "abc"}, "false", id="f-match-2"),
    P('#{MyVar | Match "a b"}', {"MyVar": "a b c"}, "true", id="f-match-3"),
    P('#{MyVar | Match "ab[0-9]+"}', {"MyVar": "ab12c3"}, "true", id="f-match-4"),
    # The docs say "when match=abc" but the template names `pattern`.
    P("#{MyVar | Match #{pattern}}", {"MyVar": "abc", "pattern": "abc"}, "true", id="f-match-5"),
    P("#{MyVar | StartsWith ab}", {"MyVar": "abc"}, "true", id="f-startswith-1"),
    P("#{MyVar | StartsWith bc}", {"MyVar": "abc"}, "false", id="f-startswith-2"),
    P("#{MyVar | StartsWith Ab}", {"MyVar": "abc"}, "false", id="f-startswith-3"),
    P("#{MyVar | EndsWith bc}", {"MyVar": "abc"}, "true", id="f-endswith-1"),
    P("#{MyVar | EndsWith ab}", {"MyVar": "abc"}, "false", id="f-endswith-2"),
    P("#{MyVar | EndsWith bC}", {"MyVar": "abc"}, "false", id="f-endswith-3"),
    P("#{MyVar | Contains bc}", {"MyVar": "abc"}, "true", id="f-contains-1"),
    P("#{MyVar | Contains ab}", {"MyVar": "abc"}, "true", id="f-contains-2"),
    P("#{MyVar | Contains AbC}", {"MyVar": "abc"}, "false", id="f-contains-3"),
    P('#{MyVar | Contains " b("}', {"MyVar": "a b(c"}, "true", id="f-contains-4"),
    P("#{MyVar | Contains #{str}}", {"MyVar": 'a"b"c', "str": '"b"'}, "true", id="f-contains-5"),
    # The docs pair "Bar" with "QmF6", which is base64 for "Baz"; "Bar" is "QmFy".
    P("#{MyVar | FromBase64}", {"MyVar": "QmFy"}, "Bar", id="f-frombase64"),
    P("#{MyVar | ToBase64}", {"MyVar": "Bar"}, "QmFy", id="f-tobase64"),
    P("#{ | NowDateUtc zz}", {}, "+00", id="f-nowdateutc-zz"),
    P("#{MyVar | HtmlEscape}", {"MyVar": "1 < 2"}, "1 &lt; 2", id="f-htmlescape"),
    P("#{MyVar | JsonEscape}", {"MyVar": 'He said "Hello!"'}, 'He said \\"Hello!\\"', id="f-jsonescape"),
    P("#{MyVar | PropertiesKeyEscape}", {"MyVar": "Hey: x=y"}, "Hey\\:\\ x\\=y", id="f-propertieskey"),
    P("#{MyVar | PropertiesValueEscape}", {"MyVar": "a\\b=c"}, "a\\\\b=c", id="f-propertiesvalue"),
    P("#{MyVar | UriEscape}", {"MyVar": "A b:c+d/e"}, "A%20b:c+d/e", id="f-uriescape"),
    P("#{MyVar | UriDataEscape}", {"MyVar": "A b:c+d/e"}, "A%20b%3Ac%2Bd%2Fe", id="f-uridataescape"),
    P("#{MyVar | XmlEscape}", {"MyVar": "1 < 2"}, "1 &lt; 2", id="f-xmlescape"),
    P("#{MyVar | YamlDoubleQuoteEscape}", {"MyVar": '"Hello"\\Goodbye'}, '\\"Hello\\"\\\\Goodbye',
      id="f-yamldouble"),
    P("#{MyVar | YamlSingleQuoteEscape}", {"MyVar": "The bee's knees"}, "The bee''s knees", id="f-yamlsingle"),
    P("Server=#{if DatabaseServer}#{DatabaseServer}#{/if};", {}, "Server=;", id="f-if-defined-empty"),
    P("Server=#{if DatabaseServer}#{DatabaseServer}#{/if};", {"DatabaseServer": "db1"}, "Server=db1;",
      id="f-if-defined-set"),
    # --- Octopus docs, "Variable substitutions" (octopus.com/docs/projects/variables/variable-substitutions;
    #     OctopusDeploy/docs src/pages/docs/projects/variables/variable-substitutions.mdx)
    P("#{ConnectionString}", {"Server": "SQL", "Database": "PDB001",
                              "ConnectionString": "Server=#{Server}; Database=#{Database}"},
      "Server=SQL; Database=PDB001", id="s-binding"),
    P("##{NotToBeReplaced}", {}, "#{NotToBeReplaced}", id="s-escape"),
    P("#{MyPassword[#{UserName}]}", {"MyPassword[Rob]": "passwordX", "MyPassword[Steve]": "passwordY",
                                     "MyPassword[Mary]": "passwordZ", "UserName": "Mary"},
      "passwordZ", id="s-index-replacement"),
    P("192.168.0.#{calc IPOffset[Primary] + 1}", {"IPOffset[Primary]": "0"}, "192.168.0.1", id="s-calc-1"),
    P("192.168.0.#{calc IPOffset[Secondary] + 1}", {"IPOffset[Secondary]": "180"}, "192.168.0.181",
      id="s-calc-2"),
    P("#{calc 22 * ScaleFactor}", {"ScaleFactor": "12"}, "264", id="s-calc-3"),
    # The docs close this loop with "#{each}", a typo for "#{/each}".
    P("#{each i in Numbers}#{calc i + 5} #{/each}", {"Numbers": "10,20,30,40,50"}, "15 25 35 45 55 ",
      id="s-calc-each"),
    P('<compilation #{if DebugEnabled}debug="true"#{/if}>', {"DebugEnabled": "True"},
      '<compilation debug="true">', id="s-if-dev"),
    P('<compilation #{if DebugEnabled}debug="true"#{/if}>', {"DebugEnabled": "False"}, "<compilation >",
      id="s-if-production"),
    P('<compilation #{unless DebugDisabled}debug="true"#{/unless}>', {}, '<compilation debug="true">',
      id="s-unless"),
    P("#{if Environment.LogLevel == Base.MaxLogLevel}We are at the MAX!#{else}We have room to grow!#{/if}",
      {"Base.MaxLogLevel": "ERROR", "Environment.LogLevel": "DEBUG"}, "We have room to grow!", id="s-compare-dev"),
    P("#{if Environment.LogLevel == Base.MaxLogLevel}We are at the MAX!#{else}We have room to grow!#{/if}",
      {"Base.MaxLogLevel": "ERROR", "Environment.LogLevel": "ERROR"}, "We are at the MAX!", id="s-compare-prod"),
    P('#{if Octopus.Environment.Name == "Production"}true#{/if}', {"Octopus.Environment.Name": "Production"},
      "true", id="s-run-condition-1"),
    P('#{if Octopus.Environment.Name != "Production"}true#{/if}', {"Octopus.Environment.Name": "Production"},
      "", id="s-run-condition-2"),
    P('#{unless Octopus.Action[StepName].Output.HasRun == "True"}true#{/unless}', {}, "true",
      id="s-run-condition-3"),
    P('#{unless Octopus.Action[StepName].Output.HasRun == "True"}true#{/unless}',
      {"Octopus.Action[StepName].Output.HasRun": "True"}, "", id="s-run-condition-4"),
    P("#{Octopus.Environment.Name | ToLower}", {"Octopus.Environment.Name": "Production"}, "production",
      id="s-filter"),
    # --- Octostache source/Octostache.Tests/UsageFixture.cs
    P("#{Foo}", {"Foo": "Bar"}, "Bar", id="u-basic-1"),
    P("#{Foo}", {"foo": "Bar"}, "Bar", id="u-basic-2"),
    P("#{Foo}", {"Foo": "#{Bar}", "Bar": "Baz"}, "Baz", id="u-basic-3"),
    P("#{Foo}", {"Foo": "#{Bar | ToLower}", "Bar": "Baz"}, "baz", id="u-basic-4"),
    P("#{Foo Bar Jazz}", {"Foo Bar Jazz": "Bar"}, "Bar", id="u-basic-5"),
    P("#{Foo|ToUpper}", {"Foo": "#{Bar | ToLower}", "Bar": "Baz"}, "BAZ", id="u-basic-6"),
    P("#{Foo | ToUpper}", {"Foo": "baz"}, "BAZ", id="u-basic-7"),
    P("##{Foo}", {"foo": "Bar"}, "#{Foo}", id="u-basic-8"),
    P("#{a/b}", {"a/b": "Foo"}, "Foo", id="u-awkward-1"),
    P("#{a~b}", {"a~b": "Foo"}, "Foo", id="u-awkward-2"),
    P("#{(abc)}", {"(abc)": "Foo"}, "Foo", id="u-awkward-3"),
    P("#{ }", {"Foo": "Value", " ": "Bar"}, "#{ }", id="u-empty-echoed-1"),
    P("#{}", {"Foo": "Value", "": "Bar"}, "#{}", id="u-empty-echoed-2"),
    P("##{foo}", {"foo": "Abc"}, "#{foo}", id="u-double-hash"),
    P("###{foo}", {"foo": "Abc"}, "#Abc", id="u-triple-hash"),
    P("# ## ###", {}, "# ## ###", id="u-standalone-hashes"),
    P("###### hello", {}, "###### hello", id="u-even-hashes"),
    P("####### world", {}, "####### world", id="u-odd-hashes"),
    P("#{Url}/foo", {"Server": "Web01", "Port": "10933", "Url": "http://#{Server | ToLower}:#{Port}"},
      "http://web01:10933/foo", id="u-documentation-introduction"),
    P("#{Octopus.Action[Package A].Name}", {"Octopus.Action[Package A].Name": "Package A"}, "Package A",
      id="u-named-indexer"),
    P("Ok#{each nothing in missing}#{nothing}#{/each}", {}, "Ok", id="u-empty-iteration"),
    P("#{each a in Octopus.Action}#{each tr in a.TargetRoles}#{a.Name}#{tr}#{/each}#{/each}",
      {"Octopus.Action[Package A].Name": "A", "Octopus.Action[Package A].TargetRoles": "a,b",
       "Octopus.Action[Package B].Name": "B", "Octopus.Action[Package B].TargetRoles": "c"},
      "AaAbBc", id="u-nested-iteration"),
    P("#{each a in Octopus.Action}#{a.Name}#{/each}",
      {"PackageA_Name": "A", "PackageB_Name": "B", "Octopus.Action[Package A].Name": "#{PackageA_Name}",
       "Octopus.Action[Package B].Name": "#{PackageB_Name}"}, "AB", id="u-recursive-iteration"),
    P('#{each action in Octopus.Action}#{if Octopus.Step[#{action.StepName}].Status != "Skipped"}'
      "#{Octopus.Step[#{action.StepName}].Details}#{/if}#{/each}",
      {"Octopus.Action[Action 1].StepName": "Step 1", "Octopus.Action[Action 2].StepName": "Step 2",
       "Octopus.Step[Step 1].Details": "Step 1 Details", "Octopus.Step[Step 2].Details": "Step 2 Details",
       "Octopus.Step[Step 1].Status": "Skipped", "Octopus.Step[Step 2].Status": "Running"},
      "Step 2 Details", id="u-scoped-symbol-indexer"),
    P('#{each action in Octopus.Action}#{if Octopus.Step[#{SomeOtherVariable}].Status == "Skipped"}'
      "#{Octopus.Step[#{SomeOtherVariable}].Details}#{/if}#{/each}",
      {"Octopus.Action[Action 1].StepName": "Step 1", "Octopus.Action[Action 2].StepName": "Step 2",
       "Octopus.Step[OtherVariableValue].Details": "Octopus", "Octopus.Step[OtherVariableValue].Status": "Skipped",
       "SomeOtherVariable": "OtherVariableValue"}, "OctopusOctopus", id="u-unscoped-indexer"),
    P("#{Octopus.Step[#{action.StepName}].Status.Code}",
      {"action.StepName": "Step 1", "Octopus.Step[Step 1].Status.Code": "Running"}, "Running",
      id="u-indexing-with-symbol"),
    P("#{each a in Octopus.Action}#{a}|#{/each}",
      {"Octopus.Action[Package A].Name": "A", "Octopus.Action[Package B].Name": "B"}, "Package A|Package B|",
      id="u-iterator-is-index"),
    P("#{Foo | HtmlEscape}", {"Foo": "A&'bc"}, "A&amp;&apos;bc", id="u-html"),
    P("#{Foo | XmlEscape}", {"Foo": "A&'bc"}, "A&amp;&apos;bc", id="u-xml"),
    P("#{Foo | JsonEscape}", {"Foo": 'A&"bc'}, 'A&\\"bc', id="u-json"),
    P("#{Foo|ToUpper|ToLower}", {"Foo": "Abc"}, "abc", id="u-filter-order"),
    # --- Octostache source/Octostache.Tests/ConditionalsFixture.cs (Result=result, Truthy=true)
    *[P(t, {"Result": "result", "Truthy": "true"}, "result", id=f"c-whitespace-{n}") for n, t in enumerate([
        "#{ if Truthy}#{Result}#{/if}", "#{  if Truthy}#{Result}#{/if}", "#{if Truthy }#{Result}#{/if}",
        "#{ if Truthy  }#{Result}#{/if}", "#{if  Truthy}#{Result}#{/if}", "#{if Truthy}#{ Result}#{/if}",
        "#{if Truthy}#{  Result}#{/if}", "#{if Truthy}#{Result }#{/if}", "#{if Truthy}#{Result  }#{/if}",
        '#{if Truthy  == "true"}#{Result}#{/if}', '#{if Truthy  != "false"}#{Result}#{/if}'])],
    P("#{unless Truthy}#{Result}#{/unless}", {"Result": "result", "Truthy": "false"}, "result", id="c-unless"),
    P("#{if Octopus == Compare}#{Result}#{/if}", {"Result": "result", "Octopus": "octopus", "Compare": "octopus"},
      "result", id="c-other-variable"),
    P('#{if Octopus == "octopus"}#{Result}#{/if}', {"Result": "result", "Octopus": "octopus"}, "result",
      id="c-string"),
    P('#{if Octopus != "software"}#{Result}#{/if}', {"Result": "result", "software": "something else"}, "result",
      id="c-negation"),
    P('#{if Truthy}#{if Fooey=="foo"}#{Result}#{/if}#{/if}', {"Result": "result", "Truthy": "true", "Fooey": "foo"},
      "result", id="c-nested"),
    P("#{if Truthy}#{Result}#{else}#{ElseResult}#{/if}",
      {"Result": "result", "ElseResult": "elseresult", "Truthy": "true"}, "result", id="c-else-true"),
    P("#{if Truthy}#{Result}#{else}#{ElseResult}#{/if}",
      {"Result": "result", "ElseResult": "elseresult", "Truthy": "false"}, "elseresult", id="c-else-false"),
    P('#{if Truthy}#{Result}#{else}#{if Fooey=="foo"}#{ElseResult}#{/if}#{/if}',
      {"Result": "result", "ElseResult": "elseresult", "Fooey": "foo", "Truthy": "false"}, "elseresult",
      id="c-if-in-else"),
    # --- Octostache source/Octostache.Tests/IterationFixture.cs
    *[P(t, {"Octopus.Action[Package A].Name": "A", "Octopus.Action[Package B].Name": "B",
            "Octopus.Action[].Name": "Blank"}, "Package A-APackage B-B-Blank", id=f"i-simple-{n}")
      for n, t in enumerate(["#{each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
                             "#{ each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
                             "#{each  a in Octopus.Action}#{a}-#{a.Name}#{/each}",
                             "#{each a  in Octopus.Action}#{a}-#{a.Name}#{/each}",
                             "#{each a in Octopus.Action  }#{a}-#{a.Name}#{/each}",
                             "#{each a in Octopus.Action}#{  a}-#{a.Name}#{/each}"])],
    P("#{each a in Octopus.Action}#{each tr in a.TargetRoles}#{a.Name}#{tr}#{/each}#{/each}",
      {"Octopus.Action[Package A].Name": "A", "Octopus.Action[Package A].TargetRoles": "a,b",
       "Octopus.Action[Package B].Name": "B", "Octopus.Action[Package B].TargetRoles": "c",
       "Octopus.Action[].Name": "Z", "Octopus.Action[].TargetRoles": "y"}, "AaAbBcZy", id="i-nested"),
    P("#{each a in Numbers}#{a} First:#{Octopus.Template.Each.First} Last:#{Octopus.Template.Each.Last} "
      "Index:#{Octopus.Template.Each.Index}, #{/each}", {"Numbers": "A,B,C"},
      "A First:True Last:False Index:0, B First:False Last:False Index:1, C First:False Last:True Index:2, ",
      id="i-special-variables"),
    P("#{each a in Octopus.Action.Package}#{a}: #{a.Name} #{/each}",
      {"Octopus.Action.Package[container[0]].Name": "A", "Octopus.Action.Package[container[1]].Name": "B",
       "Octopus.Action.Package[container[2]].Name": "C"}, "container[0]: A container[1]: B container[2]: C ",
      id="i-nested-index"),
    P("#{each x in Simple}[#{x.Key}]#{/each}", {"Simple[a]": "5", "Simple[b]": "7"}, "[a][b]", id="i-key-1"),
    P("#{each x in NoDirect}[#{x.Key}]#{/each}", {"NoDirect[a].Name": "Alpha", "NoDirect[b].Name": "Beta"},
      "[a][b]", id="i-key-2"),
    P("#{each x in Cert}[#{x.Key}=#{x.Thumbprint}]#{/each}",
      {"Cert[a]": "Certificate-1", "Cert[a].Thumbprint": "AAA", "Cert[b]": "Certificate-2",
       "Cert[b].Thumbprint": "BBB"}, "[a=AAA][b=BBB]", id="i-key-3"),
    *[P(t, {"Simple[a]": "5", "Simple[b]": "7", "NoDirect[a].Name": "Alpha", "NoDirect[b].Name": "Beta",
            "Cert[a]": "Certificate-1", "Cert[a].Thumbprint": "AAA", "Cert[b]": "Certificate-2",
            "Cert[b].Thumbprint": "BBB"}, out, id=f"i-bare-{n}")
      for n, (t, out) in enumerate([("#{each x in Simple}[#{x}]#{/each}", "[5][7]"),
                                    ("#{each x in NoDirect}[#{x}]#{/each}", "[a][b]"),
                                    ("#{each x in Cert}[#{x}]#{/each}", "[Certificate-1][Certificate-2]")])],
    P("#{each x in Coll}[#{x.Key}]#{/each} #{Coll[a].Key}", {"Coll[a]": "val-a", "Coll[a].Key": "user-supplied"},
      "[user-supplied] user-supplied", id="i-user-key-1"),
    P("#{each x in Coll}[#{x.Key}]#{/each}", {"Coll[a].Key": "user-supplied", "Coll[a].Name": "Alpha"},
      "[user-supplied]", id="i-user-key-2"),
    # --- Octostache source/Octostache.Tests/FiltersFixture.cs
    P("#{Foo | ToUpper}", {"Foo": "Abc"}, "ABC", id="x-applied"),
    P("#{Foo | HtmlEscape}", {"Foo": ""}, "", id="x-html-empty"),
    P("#{Foo | UriDataEscape}", {"Foo": "A b:c+d/e"}, "A%20b%3Ac%2Bd%2Fe", id="x-uridata"),
    P("#{Foo | UriEscape}", {"Foo": "A b:c+d/e"}, "A%20b:c+d/e", id="x-uri"),
    *[P("#{Foo | JsonEscape}", {"Foo": i}, o, id=f"x-json-{n}") for n, (i, o) in enumerate([
        ('Test"Test', 'Test\\"Test'), ("Test\rTest", "Test\\rTest"), ("Test\nTest", "Test\\nTest"),
        ("Test\tTest", "Test\\tTest"), ("Test\\Test", "Test\\\\Test")])],
    *[P("#{Foo | YamlSingleQuoteEscape}", {"Foo": i}, o, id=f"x-yamlsingle-{n}") for n, (i, o) in enumerate([
        ("single'quote", "single''quote"), ("\\'", "\\''"), ("a\n\tb\n\tc\n\td", "a\n\n\tb\n\n\tc\n\n\td"),
        ("a\r\nb", "a\r\n\r\nb"), ("a\n\r\nb", "a\n\n\r\nb"), ("", "")])],
    *[P("#{Foo | YamlDoubleQuoteEscape}", {"Foo": i}, o, id=f"x-yamldouble-{n}") for n, (i, o) in enumerate([
        ('double"quote', 'double\\"quote'), ("\\", "\\\\"), ('"', '\\"'), ("\t", "\\t"), ("\n", "\\n"),
        ("\r\n", "\\r\\n"), ("a\n\tb\n\tc\n\td", "a\\n\\tb\\n\\tc\\n\\td"), ("single'quote", "single'quote"),
        ("我叫章鱼", "\\u6211\\u53eb\\u7ae0\\u9c7c")])],
    *[P("#{Foo | PropertiesKeyEscape}", {"Foo": i}, o, id=f"x-propkey-{n}") for n, (i, o) in enumerate([
        (" ", "\\ "), (":", "\\:"), ("=", "\\="), ("\\", "\\\\"), ("\r", "\\r"), ("\n", "\\n"), ("\t", "\\t"),
        (" a \n b ", "\\ a\\ \\n\\ b\\ "), ("0123456789", "0123456789"), ("我叫章鱼", "\\u6211\\u53eb\\u7ae0\\u9c7c"),
        ("÷ü", "÷ü")])],
    *[P("#{Foo | PropertiesValueEscape}", {"Foo": i}, o, id=f"x-propvalue-{n}") for n, (i, o) in enumerate([
        (":", ":"), ("=", "="), (" ", "\\ "), ("a ", "a "), ("\\", "\\\\"), ("\r", "\\r"), ("\n", "\\n"),
        ("\t", "\\t"), (" a \n b ", "\\ a \\n b "), ("我叫章鱼", "\\u6211\\u53eb\\u7ae0\\u9c7c"), ("÷ü", "÷ü")])],
    P('#{Foo | Format Date "HH dd-MMM-yyy"}', {"Foo": "2030/05/22 09:05:00"}, "09 22-May-2030", id="x-date"),
    P("#{Foo | Format Date #{Format}}", {"Foo": "2030/05/22 09:05:00", "Format": "HH dd-MMM-yyyy"},
      "09 22-May-2030", id="x-date-inner-variable"),
    P('#{MyDate | Format DateTime "HH dd-MMM-yyyy" }', {"MyDate": "2030/05/22 09:05:00"}, "09 22-May-2030",
      id="x-date-generic"),
    P('#{MyDate | Format DateTime \\"HH dd-MMM-yyyy\\" }', {"MyDate": "2030/05/22 09:05:00"}, "09 22-May-2030",
      id="x-date-escaped-quotes"),
    P("#{ Date | Format yyyy}", {"Date": "2030/05/22 09:05:00"}, "2030", id="x-date-default"),
    P("#{Cash | Format C}", {"Cash": "23.4"}, "$23.40", id="x-decimal-currency-en-US"),
    P("#{Cash | Format Double C}", {"Cash": "23.4"}, "$23.40", id="x-double-currency-en-US"),
    P("#{ | NowDateUtc | Format DateTimeOffset zz}", {}, "+00", id="x-nowdateutc-chained"),
    P("#{String | tobase64}", {"String": "Foo Bar"}, "Rm9vIEJhcg==", id="x-base64"),
    P("#{foo | Replace abc def}", {"foo": "abc"}, "def", id="x-replace"),
    P("#{foo | Replace a}", {"foo": "abc"}, "bc", id="x-replace-empty"),
    P("#{foo | Replace abc def}", {"foo": "ABC"}, "ABC", id="x-replace-case"),
    P('#{foo | Replace "ab c" "d ef"}', {"foo": "ab c"}, "d ef", id="x-replace-spaces"),
    P("#{foo | Replace #{regex}#{replacement}}", {"foo": "abc", "regex": "b", "replacement": "x"}, "axc",
      id="x-replace-variables"),
    P("#{foo | Replace #{regex}#{replacement}}", {"foo": 'a"b', "regex": 'a"', "replacement": '"c'}, '"cb',
      id="x-replace-quotes-via-variables"),
    P("#{foo | Replace \"a'b\" \"d'e\"}", {"foo": "a'b"}, "d'e", id="x-replace-single-quotes"),
    P('#{foo | Replace "[a-z]+" 1}', {"foo": "a'b"}, "1'1", id="x-replace-range"),
    P('#{foo | Replace "a\\(b" "d(e"}', {"foo": "a(b"}, "d(e", id="x-replace-escaped"),
    P('#{foo | Replace "o(.+)o([a-z]*)s" "o$2o$1s"}', {"foo": "opuocts"}, "octopus", id="x-replace-groups"),
    P('#{foo | Replace "a" x}', {"foo": "ababa"}, "xbxbx", id="x-replace-all"),
    P('#{foo | Replace "^a" x}', {"foo": "ababa"}, "xbaba", id="x-replace-start"),
    P('#{foo | Replace "a$" x}', {"foo": "ababa"}, "ababx", id="x-replace-end"),
    P("#{foo | Substring 7}", {"foo": "Octopus Deploy"}, "Octopus", id="x-substring-length"),
    P("#{foo | Substring 8 6}", {"foo": "Octopus Deploy"}, "Deploy", id="x-substring-start-length"),
    P("#{foo | Truncate 50}", {"foo": "Octopus Deploy"}, "Octopus Deploy", id="x-truncate-long"),
    P("#{foo | Trim}", {"foo": " Octopus Deploy "}, "Octopus Deploy", id="x-trim"),
    P("#{foo | Trim start}", {"foo": " Octopus Deploy "}, "Octopus Deploy ", id="x-trim-start"),
    P("#{foo | Trim End}", {"foo": " Octopus Deploy "}, " Octopus Deploy", id="x-trim-end"),
    P("#{foo | Substring 8 | Trim}", {"foo": "Octopus Deploy"}, "Octopus", id="x-trim-chained"),
    *[P(f"#{{foo | {f}}}", {"foo": v}, o, id=f"x-compare-{n}") for n, (v, f, o) in enumerate([
        ("abc def", "Match abc", "true"), ("abc def", "Match cba", "false"), ("abc def", "Match ABC", "false"),
        ("abc def", 'Match "abc def"', "true"), ("abc'def", "Match \"abc'def\"", "true"),
        ("abc def", 'Match ".*"', "true"), ("abc def1", 'Match "[0-9]+"', "true"),
        ("abc(def", 'Match "c\\(d"', "true"), ("abc def", "StartsWith abc", "true"),
        ("abc def", "StartsWith bc", "false"), ("abc def", "StartsWith ABC", "false"),
        ("abc def", 'StartsWith "abc d"', "true"), ("abc'def", "StartsWith \"abc'\"", "true"),
        ("abc def", "EndsWith def", "true"), ("abc def", "EndsWith de", "false"),
        ("abc def", "EndsWith DEF", "false"), ("abc def", 'EndsWith "c def"', "true"),
        ("abc'def", "EndsWith \"'def\"", "true"), ("abc def", "Contains de", "true"),
        ("abc def", "Contains ed", "false"), ("abc def", "Contains ABC", "false"),
        ("abc def", 'Contains "c de"', "true"), ("abc'def", "Contains \"'de\"", "true")])],
    P("#{foo | Match #{regex}}", {"foo": "abc def", "regex": "def"}, "true", id="x-match-variable"),
    P("#{foo | StartsWith #{str}}", {"foo": "abc def", "str": "abc"}, "true", id="x-startswith-variable"),
    P("#{foo | EndsWith #{str}}", {"foo": "abc def", "str": "def"}, "true", id="x-endswith-variable"),
    P("#{foo | Contains #{str}}", {"foo": "abc def", "str": "c d"}, "true", id="x-contains-variable"),
    P("#{|Append foo}", {}, "foo", id="x-append-no-input"),
    *[P(f"#{{foo | Append {opts}}}", {"foo": "bar"}, "bar" + out, id=f"x-append-{n}") for n, (opts, out) in
      enumerate([("value", "value"), ("value1 value2", "value1value2"), ('value1 \\" \\" value2', "value1 value2"),
                 ('\\" \\" #{foo} \\" \\" value', " bar value")])],
    P("#{|Prepend foo}", {}, "foo", id="x-prepend-no-input"),
    P("#{foo | Prepend value1 value2}", {"foo": "bar"}, "value1value2bar", id="x-prepend"),
    # --- Microsoft .NET docs, "Standard Numeric Format Strings Output Examples" and "Custom Numeric Format
    #     Strings Output Examples" (learn.microsoft.com/en-us/previous-versions/dotnet/netframework-3.0/241ad66z
    #     and 7x5bacwt), en-US culture: what `Format` passes to .ToString().
    *[P(f"#{{N | Format {typ} {fmt}}}", {"N": value}, out, id=f"net-standard-{n}") for n, (typ, fmt, value, out) in
      enumerate([("Double", "C", "12345.6789", "$12,345.68"), ("Int32", "D", "12345", "12345"),
                 ("Int32", "D8", "12345", "00012345"), ("Double", "E", "12345.6789", "1.234568E+004"),
                 ("Double", "E10", "12345.6789", "1.2345678900E+004"), ("Double", "e4", "12345.6789", "1.2346e+004"),
                 ("Double", "F", "12345.6789", "12345.68"), ("Double", "F6", "12345.6789", "12345.678900"),
                 ("Double", "G", "12345.6789", "12345.6789"), ("Double", "G7", "12345.6789", "12345.68"),
                 ("Double", "G", "0.0023", "0.0023"), ("Double", "N", "12345.6789", "12,345.68"),
                 ("Double", "N4", "123456789", "123,456,789.0000"), ("Double", "P", ".126", "12.60 %")])],
    *[P(f'#{{N | Format Double "{fmt}"}}', {"N": value}, out, id=f"net-custom-{n}") for n, (fmt, value, out) in
      enumerate([("#####", "123", "123"), ("00000", "123", "00123"),
                 ("(###) ### - ####", "1234567890", "(123) 456 - 7890"), ("#.##", "1.2", "1.2"),
                 ("0.00", "1.2", "1.20"), ("00.00", "1.2", "01.20"), ("#,#", "1234567890", "1,234,567,890"),
                 ("#,,", "1234567890", "1235"), ("#,,,", "1234567890", "1"), ("#,##0,,", "1234567890", "1,235"),
                 ("#0.##%", "0.086", "8.6%"), ("[##-##-##]", "123456", "[12-34-56]"), ("##;(##)", "1234", "1234"),
                 ("##;(##)", "-1234", "(1234)")])],
]


@pytest.mark.parametrize(("template", "variables", "expected"), CONFORMANCE)
def test_conformance(template: str, variables: dict[str, str], expected: str) -> None:
    assert render(template, variables) == expected


def test_conformance_table_is_large_enough() -> None:
    assert len(CONFORMANCE) >= 60


# Octostache echoes a filter that cannot apply and a token that does not parse; ferry does that with
# strict=False and warns (source: Octostache FiltersFixture.cs and UsageFixture.cs).
ECHOED = [
    P("#{foo | Replace}", {"foo": "abc"}, id="replace-no-args"),
    P("#{foo | Substring}", {"foo": "ababa"}, id="substring-no-args"),
    P("#{foo | Substring 1 2 3}", {"foo": "ababa"}, id="substring-too-many"),
    P("#{foo | Substring a}", {"foo": "Octopus Deploy"}, id="substring-non-numeric"),
    P("#{foo | Substring 0 a}", {"foo": "Octopus Deploy"}, id="substring-non-numeric-length"),
    P("#{foo | Substring 20}", {"foo": "Octopus Deploy"}, id="substring-out-of-range"),
    P("#{foo | Substring 8 7}", {"foo": "Octopus Deploy"}, id="substring-start-out-of-range"),
    P("#{foo | Substring -1}", {"foo": "Octopus Deploy"}, id="substring-negative"),
    P("#{foo | Substring 0 -1}", {"foo": "Octopus Deploy"}, id="substring-negative-length"),
    P("#{foo | Truncate}", {"foo": "Octopus Deploy"}, id="truncate-no-args"),
    P("#{foo | Truncate a}", {"foo": "Octopus Deploy"}, id="truncate-non-numeric"),
    P("#{foo | Truncate -1}", {"foo": "Octopus Deploy"}, id="truncate-negative"),
    P("#{foo | Trim Both}", {"foo": "Octopus Deploy"}, id="trim-bad-option"),
    P("#{foo | Match}", {"foo": "abc def"}, id="match-no-args"),
    P("#{foo | Match a b}", {"foo": "abc def"}, id="match-too-many"),
    P("#{foo | StartsWith}", {"foo": "abc def"}, id="startswith-no-args"),
    P("#{foo | EndsWith a b}", {"foo": "abc def"}, id="endswith-too-many"),
    P("#{foo | Contains}", {"foo": "abc def"}, id="contains-no-args"),
    P("#{foo | Append}", {"foo": "bar"}, id="append-no-args"),
    P("#{ | Prepend}", {"foo": "bar"}, id="prepend-no-args"),
    P("#{Invalid | Format yyyy}", {"Invalid": "hello World"}, id="format-no-type"),
    P("#{Foo", {"Foo": "Bar"}, id="unclosed"),
    P("#{Fo[o}", {"Foo": "Bar", "Fo[o]": "Bar"}, id="unclosed-index"),
]


@pytest.mark.parametrize(("template", "variables"), ECHOED)
def test_lenient_mode_echoes_what_cannot_apply(template: str, variables: dict[str, str]) -> None:
    warnings: list[str] = []
    assert render(template, variables, strict=False, warnings=warnings, where="app.config") == template
    assert len(warnings) == 1 and warnings[0].startswith("app.config: line 1, column 1: ")
    with pytest.raises(TemplateError, match=r"^app\.config: line 1, column 1: "):
        render(template, variables, where="app.config")


def test_parse_errors_do_not_stop_later_substitutions() -> None:
    # Octostache UsageFixture.AbleToContinueWhenAParsingErrorIsHit(AtEndOfString), shortened.
    template = 'a=function(e){return"#{"===e.substr(0,2)?void 0:e},i="#{Web.Root}";var l="#{Wsf.Host}";x="#{'
    expected = 'a=function(e){return"#{"===e.substr(0,2)?void 0:e},i="Subbed.Web.Root";var l="Subbed.Wsf.Host";x="#{'
    variables = {"Web.Root": "Subbed.Web.Root", "Wsf.Host": "Subbed.Wsf.Host"}
    warnings: list[str] = []
    assert render(template, variables, strict=False, warnings=warnings) == expected
    assert len(warnings) == 2


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_documented_iteration_examples() -> None:
    # Octopus docs "Variable substitutions" > Repetition.  The documented results omit the blank lines the
    # newlines around #{each}/#{/each} leave behind (Octostache keeps text verbatim), so compare non-blank lines.
    groups = {"Endpoint[A].Address": "http://a.example.com", "Endpoint[A].Description": "Primary",
              "Endpoint[B].Address": "http://b.example.com", "Endpoint[B].Description": "Replica"}
    template = ("Listening on:\n#{each endpoint in Endpoint}\n"
                " - Endpoint #{endpoint} at #{endpoint.Address} is #{endpoint.Description}\n#{/each}\n")
    assert _lines(render(template, groups)) == [
        "Listening on:", " - Endpoint A at http://a.example.com is Primary",
        " - Endpoint B at http://b.example.com is Replica"]
    commas = {"Endpoints": "http://a.example.com,http://b.example.com"}
    template = "Listening on:\n#{each endpoint in Endpoints}\n - #{endpoint}\n#{/each}\n"
    assert _lines(render(template, commas)) == ["Listening on:", " - http://a.example.com", " - http://b.example.com"]


def test_now_date_filters() -> None:
    # Octostache FiltersFixture.NowDateReturnsNow / NowDateCanBeFormatted / NowDateCanBeChained.
    before = datetime.now()
    now = render("#{ | NowDate}", {})
    assert abs((datetime.fromisoformat(now[:26]) - before).total_seconds()) < 60
    assert len(now) == 27 and now[19] == "."  # .NET round-trip: seven fraction digits, no offset
    assert render("#{ | NowDate yyyy}", {}) == str(datetime.now().year)
    assert render("#{ | NowDate | Format Date MMM}", {}) == datetime.now().strftime("%b")
    assert render("#{ | NowDateUtc}", {}).endswith("Z")
    assert render("#{ | NowDate #{MyFormat}}", {"MyFormat": "dd-MM-yyyy"}) == datetime.now().strftime("%d-%m-%Y")


# ------------------------------------------------------------------------------------------------ properties

# Characters that mean something to Octostache, Jinja or a parser, mixed with any UTF-8 encodable text.
_TRICKY = st.text(alphabet=st.sampled_from(list("#{}%|\"'\\\n\r\t []().:ab ")) | st.characters(codec="utf-8"),
                  max_size=60)


@given(_TRICKY.filter(lambda t: "#{" not in t))
def test_text_without_tokens_passes_through(text: str) -> None:
    assert render(text, {}) == text


@given(_TRICKY)
def test_substitution_output_is_never_rescanned(text: str) -> None:
    # The decoded value holds #{, {{, {% ... as plain output of a substitution: it must come out as is.
    encoded = base64.b64encode(text.encode()).decode()
    assert render("<#{X | FromBase64}>", {"X": encoded, "Y": "no"}) == f"<{text}>"


@given(_TRICKY)
def test_escaped_values_come_out_byte_for_byte(text: str) -> None:
    assert render("[#{X}]", {"X": escape(text), "a": "no"}) == f"[{text}]"
    assert render(escape(text), {}) == text


@given(_TRICKY.filter(lambda t: "#{" not in t))
def test_plain_values_are_substituted_verbatim(text: str) -> None:
    assert render("a#{X}b", {"X": text}) == f"a{text}b"


# ---------------------------------------------------------------------------------------------------- errors


def test_unknown_variable_names_it_and_where() -> None:
    with pytest.raises(TemplateError) as err:
        render("url: http://\n  #{Web.Host | ToLower}/x", {}, where="step 'Smoke test' field url")
    message = str(err.value)
    assert message.startswith("step 'Smoke test' field url: line 2, column 3: unknown variable 'Web.Host'")
    assert err.value.variable == "Web.Host"  # type: ignore[attr-defined]


def test_unknown_variable_lenient_renders_empty_and_warns() -> None:
    warnings: list[str] = []
    assert render("a#{Nope}b#{Nope2 | ToUpper}c", {}, strict=False, warnings=warnings, where="web.config") == "abc"
    assert warnings == ["web.config: line 1, column 2: unknown variable 'Nope' in #{Nope}",
                        "web.config: line 1, column 10: unknown variable 'Nope2' in #{Nope2 | ToUpper}"]


def test_unknown_variable_inside_a_value_points_at_the_use() -> None:
    with pytest.raises(TemplateError, match=r"^f: line 1, column 3: unknown variable 'Missing' \(in the value of "
                                            r"variable 'A' -> 'B', line 1, column 1\)"):
        render("x #{A}", {"A": "#{B}", "B": "#{Missing}"}, where="f")


def test_values_are_not_quoted_in_errors() -> None:
    # A (possibly sensitive) value's text never appears in a message, only its name and a position.
    with pytest.raises(TemplateError) as err:
        render("#{Password}", {"Password": "s3cr3t#{oops"})
    assert "s3cr3t" not in str(err.value) and "'Password'" in str(err.value)
    with pytest.raises(TemplateError) as err:
        render("#{each p in Passwords}#{p.Hash}#{/each}", {"Passwords": "s3cr3t,other"})
    assert "s3cr3t" not in str(err.value)
    assert "an entry of a comma-separated list has no '.Hash' in #{p.Hash}" in str(err.value)


@pytest.mark.parametrize("strict", [True, False])
def test_unknown_filter_always_raises(strict: bool) -> None:
    with pytest.raises(TemplateError, match=r"^deploy\.sh: line 1, column 5: filter 'ToBazooka' is unknown"):
        render("x = #{Foo | ToBazooka}", {"Foo": "Abc"}, where="deploy.sh", strict=strict)
    with pytest.raises(TemplateError, match="filter 'Markdown' is not supported by ferry"):
        render("#{Foo | Markdown}", {"Foo": "_x_"}, strict=strict)


def test_filter_failure_strict_names_filter() -> None:
    with pytest.raises(TemplateError, match=r"line 1, column 1: Substring: the range ends at 20.* in #\{foo"):
        render("#{foo | Substring 20}", {"foo": "Octopus Deploy"})


@pytest.mark.parametrize(("template", "message"), [
    ("a\n#{if X}b", r"^f: line 2, column 1: #\{if X\} is never closed \(missing #\{/if\}\)"),
    ("#{unless X}#{else}", r"^f: line 1, column 1: #\{unless X\} is never closed"),
    ("#{each a in B}x", r"missing #\{/each\}"),
    ("ok #{/if}", r"^f: line 1, column 4: #\{/if\} without an opening #\{if"),
    ("#{/each}", r"#\{/each\} without an opening"),
    ("#{if X}#{each a in B}#{/if}#{/each}", r"line 1, column 22: #\{/if\} closes #\{each a in B\} opened at line 1, "
                                            r"column 8; expected #\{/each\}"),
    ("#{if X}#{/unless}", r"#\{/unless\} closes #\{if X\}"),
    ("#{else}", r"#\{else\} outside #\{if\}"),
    ("#{each a in B}#{else}#{/each}", r"#\{else\} outside #\{if\}"),
    ("#{if X}a#{else}b#{else}c#{/if}", r"a second #\{else\}"),
    ("#{if X | ToUpper}a#{/if}", r"filters are not supported in conditions"),
    ("#{if X == }a#{/if}", r"missing an operand"),
    ("#{each in B}#{/each}", r"expected #\{each <name> in <Variable>\}"),
    ("#{calc 1 +}", r"#\{calc\}: a number or variable expected"),
    ("#{calc (1 + 2}", r"#\{calc\}: '\)' expected"),
])
def test_malformed_blocks_raise_with_position(template: str, message: str) -> None:
    for strict in (True, False):
        with pytest.raises(TemplateError, match=message):
            render(template, {"X": "1", "B": "x"}, where="f", strict=strict)


@pytest.mark.parametrize("variables", [{"Foo": "#{Foo}"}, {"Foo": "#{Fox}", "Fox": "#{Fax}", "Fax": "#{Foo}"}])
def test_cycles_raise(variables: dict[str, str]) -> None:
    # Octostache UsageFixture.MaximumRecursionLimitException.
    for strict in (True, False):
        with pytest.raises(TemplateError, match=r"line 1, column 4: variable 'Foo' refers to itself \(Foo -> "):
            render("-> #{Foo}", variables, strict=strict)


def test_deep_but_finite_nesting_is_fine() -> None:
    chain = {f"V{n}": f"#{{V{n + 1}}}" for n in range(20)} | {"V20": "end"}
    assert render("#{V0}", chain) == "end"


def test_calc_errors() -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        render("#{calc 1 / Zero}", {"Zero": "0"})
    with pytest.raises(TemplateError, match="not a number"):
        render("#{calc 1 + Word}", {"Word": "abc"})
    assert render("#{calc 1 / Zero}", {"Zero": "0"}, strict=False) == "#{calc 1 / Zero}"
    assert render("#{calc (1 + 2) * -3 / 2}", {}) == "-4.5"
    with pytest.raises(TemplateError, match="the result is too large"):
        render("#{calc Big * Big}", {"Big": "9" * 200})
    with pytest.raises(TemplateError, match="a number is too large"):
        render("#{calc 1" + "0" * 400 + " * 2}", {})


# ---------------------------------------------------------------------------------------------------- sandbox


def test_python_objects_are_unreachable() -> None:
    for template in ("#{__class__}", "#{x.__class__.__mro__}", "#{_rt}", "#{_t}", "#{loop}", "#{self}"):
        with pytest.raises(TemplateError, match="unknown variable"):
            render(template, {"x": "1"})
        assert render(template, {"x": "1"}, strict=False) == ""
    assert render("#{__class__}", {"__class__": "just a name"}) == "just a name"


def test_jinja_syntax_is_text() -> None:
    template = "{{ 7*7 }} {% for x in y %}{# c #}{%raw%} #{A} {{A}} {%endraw%}"
    assert render(template, {"A": "a"}) == "{{ 7*7 }} {% for x in y %}{# c #}{%raw%} a {{A}} {%endraw%}"
    assert render('#{X | Replace "a" "{{ 7*7 }}"}', {"X": "abc"}) == "{{ 7*7 }}bc"
    assert render("#{X}", {"X": "{% if true %}{{ ''.__class__ }}{% endif %}"}) == (
        "{% if true %}{{ ''.__class__ }}{% endif %}")


def test_text_is_kept_byte_for_byte() -> None:
    text = "line1\r\nline2\rline3\n\n  \t#{A}\r\n"
    assert render(text, {"A": "x\r\ny"}) == "line1\r\nline2\rline3\n\n  \tx\r\ny\r\n"


# ------------------------------------------------------------------------------------------ more behaviour


def test_names_hold_dots_spaces_colons_hyphens_brackets() -> None:
    variables = {"Package[OctoFX.Web].Version": "1.2.3", "ConnectionStrings:Default": "cs",
                 "my-var name": "v", "Server[eu]": "eu.example", "Region": "EU"}
    assert render("#{Package[OctoFX.Web].Version}|#{ConnectionStrings:Default}|#{MY-VAR NAME}", variables) == (
        "1.2.3|cs|v")
    assert render("#{Server[#{Region | ToLower}]}", variables) == "eu.example"
    assert render("#{ Package [ OctoFX.Web ] . Version }", variables) == "1.2.3"


def test_quoted_arguments_may_hold_braces_and_pipes() -> None:
    assert render('#{X | Replace "[0-9]{3}" "|"}', {"X": "a123b"}) == "a|b"
    assert render("#{X | Replace \"(?<d>[0-9])\" \"<${d}>\"}", {"X": "a1"}) == "a<1>"


def test_each_with_nested_blocks_and_specials() -> None:
    variables = {"Roles": "web, db ,, api", "Web": "True"}
    template = ("#{each r in Roles}#{if Octopus.Template.Each.First}[#{/if}#{r}"
                "#{unless Octopus.Template.Each.Last},#{else}]#{/unless}#{/each}")
    assert render(template, variables) == "[web,db,api]"
    assert render("#{each r in Roles}#{Octopus.Template.Each.Index}#{/each}", variables) == "012"
    # Outside a loop the specials are ordinary (here unknown) variables.
    assert render("#{Octopus.Template.Each.Index}", {}, strict=False) == ""


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


def test_is_truthy() -> None:
    # Octopus docs "Variable substitutions" > Truthy and Falsy values.
    for falsy in (None, "", "False", "false", " FALSE ", "No", "no", "0", " 0 "):
        assert not is_truthy(falsy)
    for truthy in ("True", "yes", "1", "anything", "-1", "00"):
        assert is_truthy(truthy)


def test_evaluate_condition() -> None:
    variables = {"Octopus.Environment.Name": "Production", "Flag": "No", "Octopus.Deployment.Error": "boom"}
    assert evaluate_condition("#{if Octopus.Deployment.Error}true#{/if}", variables)
    assert not evaluate_condition("#{if Octopus.Deployment.Error}true#{/if}", {})
    assert evaluate_condition('#{Octopus.Environment.Name == "Production"}', variables)
    assert not evaluate_condition('#{Octopus.Environment.Name != "Production"}', variables)
    assert evaluate_condition(' #{unless Flag}true#{/unless}\n', variables)
    assert not evaluate_condition("#{Flag}", variables)
    warnings: list[str] = []
    assert not evaluate_condition("#{Missing}", {}, where="step 'x' condition", warnings=warnings)
    assert warnings == ["step 'x' condition: line 1, column 1: unknown variable 'Missing' in #{Missing}"]
    with pytest.raises(TemplateError, match="never closed"):
        evaluate_condition("#{if X}true", {})
    with pytest.raises(TemplateError, match="filter 'Nope' is unknown"):
        evaluate_condition("#{X | Nope}", {})


def test_referenced_names() -> None:
    # After Octostache ParserFixture.AListOfVariablesCanBeExtracted.
    template = """
        #{var}
        #{filter | Format #{option}}
        #{nestedParent[#{nestedChild}]}
        #{if ifvar}#{unless ifnested}debug#{/unless}#{/if}
        #{if comparison != "value"}true#{/if}
        #{each item in List}
           #{item.Address} #{Octopus.Template.Each.Index}
        #{/each}
        ##{ignored}
        #{calc Cost * 2}
    """
    assert referenced_names(template) == {"var", "filter", "option", "nestedChild", "Cost"}
    assert referenced_names(template, include_optional=True) == {
        "var", "filter", "option", "nestedChild", "Cost", "ifvar", "ifnested", "comparison", "List"}
    with pytest.raises(TemplateError, match="never closed"):
        referenced_names("#{if x}")


def test_escape() -> None:
    assert escape("#{A} ##{B} x#y {") == "##{A} ####{B} x#y {"
    assert render(escape("#{A} ##{B}"), {"A": "no"}) == "#{A} ##{B}"


# ------------------------------------------------------------------------------ known differences from Octopus


def test_deviations_from_octostache() -> None:
    # Octostache echoes an unknown variable in a template ("#{Jazz}"); ferry follows Octopus's documented
    # variable behaviour instead: empty in lenient mode, an error in strict mode.
    assert render("#{Foo}#{Jazz}", {"Foo": "#{Bar}", "Bar": "Baz"}, strict=False) == "Baz"
    # Octostache echoes an unknown filter; ferry reports it (see test_unknown_filter_always_raises).
    # JSON values are not parsed: an index into JSON is an ordinary (unknown) name.
    assert render("#{J.Name}", {"J": '{"Name": "x"}'}, strict=False) == ""
