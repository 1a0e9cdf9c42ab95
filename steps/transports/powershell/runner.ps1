# ferry's runner: every script ferry runs over WinRM goes through this file.
#
# ferry starts `powershell -NoProfile -NonInteractive -Command -` and writes ONE line to its stdin:
#   & ([ScriptBlock]::Create(<this file, base64 UTF-8>)) -Payload '<request, base64 UTF-8 JSON>'
# so nothing ferry sends is ever parsed as PowerShell except the fixed text of its own .ps1 files: the script
# to run, its parameters, environment and data all arrive inside the base64 JSON request, as data.
# Non-ASCII text survives because the line itself is pure ASCII (stdin is read in the OEM code page).
param([Parameter(Mandatory = $true)][string]$Payload)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false

$request = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($Payload)) | ConvertFrom-Json
if ($null -ne $request.env) {
    foreach ($entry in $request.env.PSObject.Properties) {
        [Environment]::SetEnvironmentVariable($entry.Name, [string]$entry.Value, 'Process')
    }
}
if ($request.cwd) {
    Set-Location -LiteralPath $request.cwd
}
# $FerryData is what the Transport protocol promises PowerShell scripts: the step's data document.
$FerryData = $request.data
# Output variables (steps/transports/service_messages.py): one line on stdout with the name and value as base64,
# so no value can break or forge it; ferry takes the line out of the log and, for -sensitive, masks the value from
# then on. The token (fresh per run, in the environment) tells ferry the line came from this function.
function Set-OctopusVariable {
    param(
        [Parameter(Mandatory = $true)][string]$name,
        [Parameter(Mandatory = $true)][AllowEmptyString()][AllowNull()][string]$value,
        [switch]$sensitive
    )
    if ([string]::IsNullOrWhiteSpace($name)) {
        throw 'Set-OctopusVariable: an output variable needs a name'
    }
    $token = [Environment]::GetEnvironmentVariable('FERRY_SERVICE_TOKEN')
    if (-not $token) {
        throw 'Set-OctopusVariable: output variables can be set only by a step''s script'
    }
    $utf8 = New-Object System.Text.UTF8Encoding $false
    $encodedName = [Convert]::ToBase64String($utf8.GetBytes($name))
    $encodedValue = [Convert]::ToBase64String($utf8.GetBytes([string]$value))
    $flag = 'False'
    if ($sensitive) {
        $flag = 'True'
    }
    [Console]::Out.WriteLine("##ferry[setVariable name='$encodedName' value='$encodedValue' sensitive='$flag' token='$token']")
    [Console]::Out.Flush()
}
# ferry's own spelling, as in bash: ferry_set NAME VALUE [-sensitive]
function ferry_set {
    param(
        [Parameter(Mandatory = $true, Position = 0)][string]$name,
        [Parameter(Mandatory = $true, Position = 1)][AllowEmptyString()][AllowNull()][string]$value,
        [switch]$sensitive
    )
    Set-OctopusVariable -name $name -value $value -sensitive:$sensitive
}

$arguments = @{}
if ($null -ne $request.parameters) {
    foreach ($entry in $request.parameters.PSObject.Properties) {
        $arguments[$entry.Name] = $entry.Value
    }
}

$code = 0
try {
    $global:LASTEXITCODE = 0
    $block = [ScriptBlock]::Create([string]$request.script)
    & $block @arguments
    if ($global:LASTEXITCODE) {
        $code = $global:LASTEXITCODE
    }
}
catch {
    # Plain text on stderr (not CLIXML): the message a person needs, then where it happened.
    [Console]::Error.WriteLine('ERROR: ' + $_.Exception.Message)
    if ($_.InvocationInfo -and $_.InvocationInfo.PositionMessage) {
        [Console]::Error.WriteLine($_.InvocationInfo.PositionMessage)
    }
    $code = 1
}
# An upload keeps the process open: the lines that follow on stdin call the functions its script defined.
if ($code -ne 0 -or -not $request.keep_open) {
    [Console]::Out.Flush()
    exit $code
}
