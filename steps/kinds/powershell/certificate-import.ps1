# ferry's certificates for the `iis-website` step (issue 15): each certificate an HTTPS binding names is imported
# into Cert:\LocalMachine\My (unless a certificate with that thumbprint and a private key is there already), its
# private key kept by the machine and not exportable, and the app pool's identity is given read access to the
# key file, so IIS can use it; the binding itself is then made by thumbprint (iis-deploy.ps1).
# Everything arrives as data: the PFX as base64 under a one-off password, the account name as a string.
param(
    [Parameter(Mandatory = $true)]$Certificates,
    [string]$Account = ''
)

$ErrorActionPreference = 'Stop'

function Get-MachineCertificate([string]$Thumbprint) {
    return Get-ChildItem -LiteralPath 'Cert:\LocalMachine\My' | Where-Object { $_.Thumbprint -eq $Thumbprint -and $_.HasPrivateKey } | Select-Object -First 1
}

function Get-PrivateKeyFile($Certificate) {
    # CNG keys live under Crypto\Keys, legacy CryptoAPI keys under Crypto\RSA\MachineKeys
    $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
    if ($null -eq $key) {
        $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate)
    }
    if ($null -eq $key) {
        throw ('certificate ' + $Certificate.Thumbprint + ' has no RSA or ECDSA private key')
    }
    if ($key -is [System.Security.Cryptography.RSACng] -or $key -is [System.Security.Cryptography.ECDsaCng]) {
        return Join-Path $env:ProgramData ('Microsoft\Crypto\Keys\' + $key.Key.UniqueName)
    }
    return Join-Path $env:ProgramData ('Microsoft\Crypto\RSA\MachineKeys\' + $key.CspKeyContainerInfo.UniqueKeyContainerName)
}

foreach ($item in @($Certificates)) {
    $thumbprint = ([string]$item.Thumbprint).ToUpperInvariant()
    $certificate = Get-MachineCertificate $thumbprint
    if ($null -eq $certificate) {
        $flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]'MachineKeySet, PersistKeySet'
        $bytes = [Convert]::FromBase64String([string]$item.Pfx)
        $imported = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList @($bytes, [string]$item.Password, $flags)
        if ($imported.Thumbprint -ne $thumbprint) {
            throw ('the certificate sent as ' + $thumbprint + ' has thumbprint ' + $imported.Thumbprint)
        }
        $store = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Store -ArgumentList @('My', 'LocalMachine')
        $store.Open('ReadWrite')
        try {
            $store.Add($imported)
        }
        finally {
            $store.Close()
        }
        Write-Output ('##ferry-certificate imported ' + $thumbprint)
        $certificate = Get-MachineCertificate $thumbprint
    }
    else {
        Write-Output ('##ferry-certificate present ' + $thumbprint)
    }
    if ($Account) {
        $file = Get-PrivateKeyFile $certificate
        $acl = Get-Acl -LiteralPath $file
        $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @($Account, 'Read', 'Allow')
        $acl.AddAccessRule($rule)
        Set-Acl -LiteralPath $file -AclObject $acl
        Write-Output ('##ferry-certificate granted ' + $thumbprint + ' ' + $Account)
    }
}
