# Shared by ferry's Windows deploy scripts (iis-deploy.ps1, windows-service.ps1): each includes this file where it
# says `# ferry:include deploy-common.ps1` (steps/kinds/powershell_scripts.py splices it in before sending), so
# there is one copy of how a versioned folder is installed and how the journal and retention work.
# The functions read the including script's parameters: $Package, $Folder, $Journal, $Overrides, $ConfigDigest.

function Read-Journal {
    if (Test-Path -LiteralPath $Journal -PathType Leaf) {
        $text = [IO.File]::ReadAllText($Journal)
        if ($text.Trim()) {
            return @((ConvertFrom-Json $text).entries)
        }
    }
    return @()
}

function Write-Journal($Entries) {
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Journal) | Out-Null
    $temp = $Journal + '.ferry-tmp'
    $json = ConvertTo-Json -InputObject @{ entries = @($Entries) } -Depth 5
    [IO.File]::WriteAllText($temp, $json, (New-Object System.Text.UTF8Encoding $false))
    if (Test-Path -LiteralPath $Journal -PathType Leaf) {
        [IO.File]::Replace($temp, $Journal, $null)
    }
    else {
        [IO.File]::Move($temp, $Journal)
    }
}

function Test-Installed([string]$Candidate) {
    $marker = Join-Path $Candidate '.ferry-install.json'
    if (-not (Test-Path -LiteralPath $marker -PathType Leaf)) {
        return $false
    }
    $installed = ConvertFrom-Json ([IO.File]::ReadAllText($marker))
    return ($installed.sha256 -eq $Package.Sha256 -and $installed.config -eq $ConfigDigest)
}

function Install-Folder {
    # A folder that already holds exactly this package and configuration is reused: that is how a rollback
    # repoints the site or service at the folder it kept instead of extracting again.
    $candidate = $Folder
    $n = 1
    while (Test-Path -LiteralPath $candidate) {
        if (Test-Installed $candidate) {
            return @{ Path = $candidate; Reused = $true }
        }
        $n++
        $candidate = $Folder + '_' + $n
    }
    $file = [string]$Package.File
    $actual = (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ne $Package.Sha256) {
        throw ('package ' + $file + ' has sha256 ' + $actual + ', expected ' + $Package.Sha256)
    }
    $temp = $candidate + '.ferry-tmp'
    if (Test-Path -LiteralPath $temp) {
        Remove-Item -LiteralPath $temp -Recurse -Force
    }
    New-Item -ItemType Directory -Force -Path $temp | Out-Null
    if ($file -match '\.(zip|nupkg)$') {
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        [IO.Compression.ZipFile]::ExtractToDirectory($file, $temp)
    }
    else {
        & tar.exe -xzf $file -C $temp
        if ($LASTEXITCODE -ne 0) {
            throw ('tar.exe could not extract ' + $file + ' (exit code ' + $LASTEXITCODE + ')')
        }
    }
    foreach ($override in @($Overrides)) {
        $relative = [string]$override.Path
        if ([IO.Path]::IsPathRooted($relative) -or $relative -match '(^|[\\/])\.\.([\\/]|$)') {
            throw ('refusing to write outside the package: ' + $relative)
        }
        $target = Join-Path $temp $relative
        [IO.File]::WriteAllBytes($target, [Convert]::FromBase64String([string]$override.Content))
    }
    $marker = ConvertTo-Json -InputObject @{ package = $Package.Id; version = $Package.Version; sha256 = $Package.Sha256; config = $ConfigDigest }
    [IO.File]::WriteAllText((Join-Path $temp '.ferry-install.json'), $marker)
    Move-Item -LiteralPath $temp -Destination $candidate
    return @{ Path = $candidate; Reused = $false }
}

function Update-Journal([string]$Key, [hashtable]$Entry, [string]$NewFolder, [string]$OldFolder) {
    # Record the installation first in the journal, then keep the newest $Keep folders of this key — and never
    # the one in use or the one it replaced (instant rollback). Returns the folders removed.
    $record = [ordered]@{ key = $Key; project = $Project; environment = $Environment; package = $Package.Id
        version = $Package.Version; sha256 = $Package.Sha256; folder = $NewFolder
        installedAt = (Get-Date).ToUniversalTime().ToString('o') }
    foreach ($name in $Entry.Keys) {
        $record[$name] = $Entry[$name]
    }
    $entries = @(Read-Journal | Where-Object { -not ($_.key -eq $Key -and $_.folder -eq $NewFolder) })
    $entries = @([pscustomobject]$record) + $entries
    $mine = @($entries | Where-Object { $_.key -eq $Key })
    $removed = @()
    $index = 0
    foreach ($item in $mine) {
        $index++
        if ($index -le $Keep -or $item.folder -eq $NewFolder -or $item.folder -eq $OldFolder) {
            continue
        }
        try {
            if (Test-Path -LiteralPath $item.folder) {
                Remove-Item -LiteralPath $item.folder -Recurse -Force
            }
            $removed += $item.folder
            $entries = @($entries | Where-Object { $_ -ne $item })
        }
        catch {
            Write-Host ('could not remove ' + $item.folder + ' (kept for the next deployment): ' + $_.Exception.Message)
        }
    }
    Write-Journal $entries
    return , $removed
}
