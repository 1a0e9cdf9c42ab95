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
