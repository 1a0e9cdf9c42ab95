# Test script: set output variables through the runner's Set-OctopusVariable (and ferry_set), with a line of
# ordinary output between them, as a step script on a Windows target would.
param(
    [Parameter(Mandatory = $true)][string]$Name,
    [Parameter(Mandatory = $true)][AllowEmptyString()][string]$Value,
    [switch]$Sensitive
)

Write-Output "setting $Name"
Set-OctopusVariable -name $Name -value $Value -sensitive:$Sensitive
ferry_set ($Name + '.Again') $Value
Write-Output "the value is $Value"
