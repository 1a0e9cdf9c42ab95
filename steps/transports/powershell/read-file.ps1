# A small file's bytes as `##ferry-file <base64>`, or `##ferry-nofile` when it does not exist.
# A relative $Path is taken from the deploy user's home, as the SSH transport does.
param([Parameter(Mandatory = $true)][string]$Path)

if (-not [IO.Path]::IsPathRooted($Path)) {
    $Path = Join-Path $HOME $Path
}
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    Write-Output ('##ferry-file ' + [Convert]::ToBase64String([IO.File]::ReadAllBytes($Path)))
}
else {
    Write-Output '##ferry-nofile'
}
