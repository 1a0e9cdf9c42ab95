# Test script: reply with exactly what arrived — parameter values, chosen environment variables and $FerryData —
# as base64 of UTF-8 JSON (so the console's code page cannot alter the reply on the way back).
param(
    [Parameter(Mandatory = $true)]$Values,
    [string[]]$EnvNames = @()
)

$environment = @{}
foreach ($name in $EnvNames) {
    $environment[$name] = [Environment]::GetEnvironmentVariable($name)
}
$reply = @{ values = $Values; env = $environment; data = $FerryData }
$json = ConvertTo-Json -InputObject $reply -Depth 10 -Compress
Write-Output ('##ferry-echo ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($json)))
