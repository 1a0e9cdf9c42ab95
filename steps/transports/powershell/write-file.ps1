# Replace a small file atomically: write a temp file beside it, then swap it in (creating the folder).
# $Content is base64, so any bytes arrive unchanged. A relative $Path is taken from the deploy user's home.
param(
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][AllowEmptyString()][string]$Content
)

if (-not [IO.Path]::IsPathRooted($Path)) {
    $Path = Join-Path $HOME $Path
}
$directory = Split-Path -Parent $Path
New-Item -ItemType Directory -Force -Path $directory | Out-Null
$temp = $Path + '.ferry-' + [Guid]::NewGuid().ToString('N').Substring(0, 12)
[IO.File]::WriteAllBytes($temp, [Convert]::FromBase64String($Content))
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    [IO.File]::Replace($temp, $Path, $null)
}
else {
    [IO.File]::Move($temp, $Path)
}
Write-Output '##ferry-written'
