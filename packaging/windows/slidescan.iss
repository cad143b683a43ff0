; Inno Setup script: wraps the PyInstaller folder (packaging\dist\slidescan) into a
; double-click installer with a Start-menu entry. Compile with ISCC.exe slidescan.iss.
[Setup]
AppName=slidescan
AppVersion=0.1.0
DefaultDirName={autopf}\slidescan
DefaultGroupName=slidescan
OutputBaseFilename=slidescan-setup
Compression=lzma2
SolidCompression=yes
PrivilegesRequired=lowest

[Files]
Source: "..\dist\slidescan\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\slidescan"; Filename: "{app}\slidescan.exe"
Name: "{userdesktop}\slidescan"; Filename: "{app}\slidescan.exe"; Tasks: desktopicon

[Tasks]
Name: desktopicon; Description: "Create a desktop icon"; Flags: unchecked
