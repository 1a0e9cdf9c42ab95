"""Octostache-compatible substitution: the documented examples as one conformance table.

The conformance table's expected outputs are copied from Octopus's documentation and from Octostache's own
test fixtures; each group names its source.  Where .NET output depends on the culture, the en-US culture is
used (the one Octopus's documentation shows).  Known differences from Octopus are tested explicitly at the end.
"""

from __future__ import annotations

import pytest

from snapshots.errors import TemplateError
from snapshots.octostache import render

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


def test_deviations_from_octostache() -> None:
    # Octopus mode echoes an unknown variable as Octostache does ("#{Jazz}"); strict mode reports it.
    assert render("#{Foo}#{Jazz}", {"Foo": "#{Bar}", "Bar": "Baz"}, strict=False) == "Baz#{Jazz}"
    with pytest.raises(TemplateError, match="unknown variable 'Jazz'"):
        render("#{Foo}#{Jazz}", {"Foo": "#{Bar}", "Bar": "Baz"})
    # Octostache echoes an unknown filter; ferry reports it (see test_unknown_filter_always_raises and
    # snapshots/octostache/DEVIATIONS.md). JSON values are read as Octostache reads them.
    assert render("#{J.Name}", {"J": '{"Name": "x"}'}, strict=False) == "x"
