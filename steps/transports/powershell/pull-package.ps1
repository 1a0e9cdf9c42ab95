# `acquire: target-pulls`: the target downloads the package from the feed's URL itself (much faster than
# pushing bytes through WinRM envelopes) and keeps it only when its SHA-256 is the one the release pinned.
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [int]$TimeoutSeconds = 600
)

$expected = $Sha256.ToLowerInvariant()
if (Test-Path -LiteralPath $Path -PathType Leaf) {
    if ((Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() -eq $expected) {
        Write-Output '##ferry-present'
        exit 0
    }
}
$directory = Split-Path -Parent $Path
New-Item -ItemType Directory -Force -Path $directory | Out-Null
$temp = $Path + '.ferry-' + [Guid]::NewGuid().ToString('N').Substring(0, 12)
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
try {
    Invoke-WebRequest -Uri $Url -OutFile $temp -UseBasicParsing -TimeoutSec $TimeoutSeconds
    $actual = (Get-FileHash -LiteralPath $temp -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ne $expected) {
        throw ('downloaded ' + $Url + ' has sha256 ' + $actual + ', expected ' + $expected + ': refusing it')
    }
    Move-Item -LiteralPath $temp -Destination $Path -Force
}
finally {
    Remove-Item -LiteralPath $temp -Force -ErrorAction SilentlyContinue
}
Write-Output ('##ferry-downloaded ' + (Get-Item -LiteralPath $Path).Length + ' ' + $expected)
