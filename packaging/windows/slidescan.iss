; Inno Setup script: the PyInstaller folder (build\pyinstaller-dist\slidescan, made from
; packaging\slidescan.spec) as a double-click installer with a Start-menu entry and an
; uninstaller. Built by .github/workflows/bundle.yml (windows job):
;   iscc /DAppVersion=0.1.0 packaging\windows\slidescan.iss
; -> dist\slidescan-0.1.0-windows-x64-setup.exe
; Per-user install by default (no administrator needed); settings, profiles and logs live in
; the user's AppData (platformdirs) and are kept by the uninstaller.
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif

[Setup]
AppId={{6F1B7F3A-4C4E-4B8F-9C61-2E5D3A9C7B10}
AppName=slidescan
AppVersion={#AppVersion}
AppPublisher=slidescan developers
AppComments=Whole-slide-imaging scanner with learned autofocus
DefaultDirName={autopf}\slidescan
DefaultGroupName=slidescan
DisableProgramGroupPage=yes
OutputDir=..\..\dist
OutputBaseFilename=slidescan-{#AppVersion}-windows-x64-setup
Compression=lzma2
SolidCompression=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\slidescan.exe
WizardStyle=modern

[Files]
Source: "..\..\build\pyinstaller-dist\slidescan\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion

[Icons]
Name: "{group}\slidescan"; Filename: "{app}\slidescan.exe"
Name: "{userdesktop}\slidescan"; Filename: "{app}\slidescan.exe"; Tasks: desktopicon

[Tasks]
Name: desktopicon; Description: "Create a desktop icon"; Flags: unchecked

[Run]
Filename: "{app}\slidescan.exe"; Description: "Start slidescan"; Flags: nowait postinstall skipifsilent
