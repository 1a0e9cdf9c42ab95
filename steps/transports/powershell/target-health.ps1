# Health facts for `ferry target check`, as one `##ferry-health <json>` line: the PowerShell version, this
# machine's UTC clock (for the skew), and the free bytes of the drive holding $Root (the first existing folder
# at or above it, so a target that was never deployed to still reports the drive it would use).
param([Parameter(Mandatory = $true)][string]$Root)

$folder = $Root
while ($folder -and -not (Test-Path -LiteralPath $folder -PathType Container)) {
    $folder = Split-Path -Path $folder -Parent
}
if (-not $folder) {
    $folder = $env:SystemDrive + '\'
}
$drive = New-Object -TypeName System.IO.DriveInfo -ArgumentList ([IO.Path]::GetPathRoot($folder))
$facts = [ordered]@{
    powershell = $PSVersionTable.PSVersion.ToString()
    now        = [DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds() / 1000.0
    free       = $drive.AvailableFreeSpace
    path       = $folder
}
Write-Output ('##ferry-health ' + (ConvertTo-Json -InputObject $facts -Compress))
